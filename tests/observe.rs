//! Integration: what operators watch. Lag is about 0 on an idle healthy link and never looks
//! healthy during a stall; `georelay status` renders links and replicas and works as a health
//! check; INFO replication and ROLE on the replica port reflect the real state.

mod support;

use std::process::Command;
use std::time::Duration;

use support::load::write_mixed;
use support::{
    agent_config, agent_config_from_agent, free_udp_port, start_replica, wait_digests_equal,
    wait_until, Agent, Client, Pki, Redis, WanSimProc,
};

const LONG: Duration = Duration::from_secs(120);

fn status(agent: &Agent, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_georelay"))
        .args([
            "status",
            "--admin",
            &format!("http://127.0.0.1:{}", agent.admin_port),
        ])
        .args(extra)
        .output()
        .expect("run georelay status");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn lag_is_zero_when_idle_and_never_healthy_during_a_stall() {
    let pki = Pki::new(&["site-a", "region-b"]);
    let master = Redis::start(&[]);
    let quic = free_udp_port();
    let a = Agent::start(&agent_config(
        &master.addr(),
        &format!(
            "agent = \"127.0.0.1:{quic}\"\n{}",
            pki.tls_section("site-a", None)
        ),
    ));
    let wan = WanSimProc::start(quic, &["--delay", "5ms"]);
    let b = Agent::start(&agent_config_from_agent(
        "region-b",
        &wan.addr(),
        &pki.tls_section("region-b", Some("site-a")),
    ));
    let replica = start_replica(&b.addr(), &[]);
    write_mixed(master.port, 0, 5_000, "s");
    wait_digests_equal(&master, &[&replica], LONG);

    // Idle and healthy: about zero lag everywhere, and status passes as a health check.
    wait_until(LONG, "B's lag settles at zero", || {
        b.metric("georelay_lag_bytes", &[]) == 0.0 && b.metric("georelay_lag_seconds", &[]) < 0.5
    });
    // The gauge reads 0 until B first hears from A: a set gauge is > 0 (now minus the last
    // heartbeat, in µs), so "never set" cannot pass for "fresh".
    let age = b.metric("georelay_upstream_heartbeat_age_seconds", &[]);
    assert!(
        age > 0.0 && age < 3.0,
        "heartbeats are not arriving on an idle link (age {age} s)"
    );
    // The per-replica families appear once B registers the replica: absent is "not yet".
    wait_until(LONG, "the replica's ACK catches up with B's head", || {
        b.try_metric("georelay_replica_lag_bytes", &[])
            .is_ok_and(|v| v == 0.0)
            && b.try_metric("georelay_replica_ack_offset", &[])
                .is_ok_and(|v| v > 0.0)
    });
    let (code, table) = status(&b, &["--max-lag", "10s"]);
    assert_eq!(code, 0, "status failed on a healthy link:\n{table}");
    assert!(
        table.contains("upstream (agent)") && table.contains("connected"),
        "{table}"
    );
    assert!(
        table.contains("replica") && table.contains("online") && table.contains("full"),
        "{table}"
    );
    let (code, json) = status(&b, &["--json"]);
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&json).expect("status --json is JSON");
    assert_eq!(doc["upstream"]["kind"], "agent");
    assert_eq!(doc["replicas"].as_array().map(|r| r.len()), Some(1));
    let (code, table) = status(&a, &[]);
    assert_eq!(code, 0);
    assert!(
        table.contains("agent") && table.contains("region-b"),
        "A's status lacks its downstream agent:\n{table}"
    );

    // Stall: the WAN goes dark while the origin keeps writing.
    wan.cut();
    write_mixed(master.port, 5_000, 10_000, "s");
    wait_until(LONG, "B's heartbeat age grows past 3 s", || {
        b.metric("georelay_upstream_heartbeat_age_seconds", &[]) > 3.0
    });
    wait_until(LONG, "A sees B falling behind", || {
        a.try_metric(
            "georelay_downstream_agent_lag_bytes",
            &[("peer", "region-b")],
        )
        .is_ok_and(|v| v > 0.0)
            || a.metric("georelay_connected_agents", &[]) == 0.0
    });
    let (code, table) = status(&b, &["--max-lag", "2s"]);
    assert_eq!(code, 1, "status looked healthy during a stall:\n{table}");
    wan.restore();
    wait_digests_equal(&master, &[&replica], LONG);
    wait_until(LONG, "status is healthy again", || {
        status(&b, &["--max-lag", "10s"]).0 == 0
    });
}

#[test]
fn info_replication_and_role_reflect_the_real_state() {
    let master = Redis::start(&[]);
    let agent = Agent::start(&agent_config(&master.addr(), ""));
    let replica = start_replica(&agent.addr(), &[]);
    write_mixed(master.port, 0, 2_000, "i");
    wait_digests_equal(&master, &[&replica], LONG);
    let mut c = Client::connect(agent.redis_port);
    let field = |c: &mut Client, f: &str| support::info_field(c, "replication", f);
    wait_until(LONG, "the replica's ACK reaches the agent's INFO", || {
        let off = field(&mut c, "master_repl_offset");
        support::try_info_field(&mut c, "replication", "slave0")
            .is_some_and(|s| s.contains(&format!("offset={off}")))
    });
    assert_eq!(field(&mut c, "role"), "slave");
    assert_eq!(field(&mut c, "master_link_status"), "up");
    assert_eq!(field(&mut c, "connected_slaves"), "1");
    assert!(
        field(&mut c, "slave0").contains("state=online"),
        "{}",
        field(&mut c, "slave0")
    );
    assert_eq!(
        field(&mut c, "master_replid"),
        master.info_field("replication", "master_replid")
    );
    assert_eq!(
        field(&mut c, "master_repl_offset"),
        master.info_field("replication", "master_repl_offset")
    );
    let role = support::frame_text(&c.cmd(&["ROLE"]));
    assert!(role.starts_with("slave 127.0.0.1"), "ROLE: {role}");
    assert!(role.contains("connected"), "ROLE: {role}");
}
