//! Integration: handshake tolerance (every REPLCONF newer replicas send, dual-channel on
//! Valkey 9.1 origins and replicas) and RDB version safety (a replica that cannot load the
//! stored snapshot is refused instead of being wiped again and again), on real servers.

mod support;

use std::time::Duration;

use georelay::resp::Frame;
use support::load::write_mixed;
use support::{
    agent_config, free_port, start_replica_kind, wait_digests_equal, wait_until, Agent, Client,
    Redis, ServerKind,
};

const LONG: Duration = Duration::from_secs(120);

fn rdb_refusals(agent: &Agent) -> f64 {
    agent.metric(
        "georelay_served_refusals_total",
        &[("kind", "redis"), ("reason", "rdb_version")],
    )
}

#[test]
fn every_replconf_of_newer_replicas_gets_ok_and_no_second_channel() {
    let master = Redis::start(&[]);
    let agent = Agent::start(&agent_config(&master.addr(), ""));
    let mut c = Client::connect(agent.redis_port);
    let variants: &[&[&str]] = &[
        &["REPLCONF", "listening-port", "7777"],
        &[
            "REPLCONF",
            "capa",
            "eof",
            "capa",
            "psync2",
            "capa",
            "dual-channel",
            "capa",
            "skip-rdb-checksum",
            "capa",
            "rdb-channel-repl",
        ],
        &["REPLCONF", "version", "9.1.2"],
        &["REPLCONF", "rdb-channel", "1"],
        &["REPLCONF", "set-rdb-client-id", "42"],
        &["REPLCONF", "main-ch-client-id", "42"],
        &["REPLCONF", "SET-CLUSTER-NODE-ID", "abcdef"],
        &["REPLCONF", "some-future-option", "x"],
    ];
    for args in variants {
        assert_eq!(
            c.cmd(args),
            Frame::Simple("OK".into()),
            "{args:?} was not accepted"
        );
    }
    c.send(&["PSYNC", "?", "-1"]);
    let reply = String::from_utf8_lossy(&c.read_until_close(Duration::from_secs(3))).into_owned();
    let line = reply.trim_start_matches('\n');
    assert!(
        line.starts_with("+FULLRESYNC "),
        "expected +FULLRESYNC (never +DUALCHANNELSYNC/+RDBCHANNELSYNC), got {:?}",
        &line[..line.len().min(80)]
    );
}

#[test]
fn valkey91_dual_channel_origin_and_replica_fall_back_to_one_channel() {
    let dual = ["--dual-channel-replication-enabled", "yes"];
    let master = Redis::start_kind(ServerKind::Valkey91, &dual);
    let agent = Agent::start(&agent_config(&master.addr(), ""));
    let replica = start_replica_kind(ServerKind::Valkey91, &agent.addr(), &dual);
    write_mixed(master.port, 0, 10_000, "d");
    wait_digests_equal(&master, &[&replica], LONG);
    // Control: the same settings directly against the origin do use a second channel.
    let direct = start_replica_kind(ServerKind::Valkey91, &master.addr(), &dual);
    wait_digests_equal(&master, &[&direct], LONG);
    assert!(direct.log_text().contains("Dual channel replication"));
    assert!(
        !replica.log_text().contains("Dual channel replication"),
        "the agent's replica used a second channel"
    );
    replica.client().cmd(&["CLIENT", "KILL", "TYPE", "master"]);
    write_mixed(master.port, 10_000, 15_000, "d");
    wait_digests_equal(&master, &[&replica], LONG);
    wait_until(LONG, "the replica resumed partially", || {
        agent.metric("georelay_served_partial_syncs_total", &[("kind", "redis")]) >= 1.0
    });
    assert_eq!(agent.metric("georelay_upstream_full_syncs_total", &[]), 1.0);
    assert_eq!(
        master.info_field("stats", "sync_full"),
        "2",
        "the agent's sync and the control replica's"
    );
    assert_eq!(
        agent.metric("georelay_served_full_syncs_total", &[("kind", "redis")]),
        1.0
    );
    assert_eq!(rdb_refusals(&agent), 0.0);
}

/// A Valkey 9.1 origin gives the agent an RDB 11 snapshot (`REDIS0011`: the agent sends no
/// `REPLCONF version`). Valkey 9.1 replicas load it; Redis 7.0 (RDB 10) and 6.2 (RDB 9) cannot.
/// Neither sends its version: the agent asks `INFO server` on their announced address and
/// refuses them before sending anything, so they keep their data.
#[test]
fn valkey91_origin_snapshot_is_refused_to_redis70_and_62_replicas_before_wiping_them() {
    let master = Redis::start_kind(ServerKind::Valkey91, &[]);
    let agent = Agent::start(&agent_config(&master.addr(), ""));
    write_mixed(master.port, 0, 5_000, "v");
    let valkey = start_replica_kind(ServerKind::Valkey91, &agent.addr(), &[]);
    wait_digests_equal(&master, &[&valkey], LONG);

    let (host, port) = agent
        .addr()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .expect("the agent's address is host:port");
    let mut old = Vec::new();
    for kind in [ServerKind::Redis70, ServerKind::Redis62] {
        let r = Redis::start_kind(kind, &[]);
        r.client().cmd(&["SET", "precious", kind.name()]);
        r.client().cmd(&["REPLICAOF", &host, &port]);
        old.push(r);
    }
    for r in &old {
        wait_until(LONG, "the replica logs the agent's refusal", || {
            r.log_text()
                .contains("georelay: the snapshot is RDB version 11 (REDIS0011)")
        });
    }
    assert!(rdb_refusals(&agent) >= 2.0);
    let text = agent.log_text();
    assert!(text.contains("refusing a full sync") && text.contains("Redis 7.0.15"));
    assert!(old[0].log_text().contains("loads RDB versions up to 10"));
    assert!(old[1].log_text().contains("loads RDB versions up to 9"));
    for r in &old {
        assert_eq!(
            r.client().cmd_str(&["GET", "precious"]),
            r.kind.name(),
            "{} was wiped",
            r.kind.name()
        );
    }
    assert_eq!(
        agent.metric("georelay_served_full_syncs_total", &[("kind", "redis")]),
        1.0,
        "only the Valkey replica may get the snapshot"
    );
    // The served Valkey replica still follows.
    write_mixed(master.port, 5_000, 6_000, "v");
    wait_digests_equal(&master, &[&valkey], LONG);
}

/// When the agent cannot learn the replica's release (here its announced port has no server),
/// the first full sync is sent; the replica fails to load it and comes back without having
/// acknowledged it, and is refused from then on instead of being fed again forever.
#[test]
fn unacknowledged_snapshot_is_not_sent_again() {
    let master = Redis::start_kind(ServerKind::Valkey91, &[]);
    let agent = Agent::start(&agent_config(&master.addr(), ""));
    write_mixed(master.port, 0, 2_000, "u");
    wait_until(LONG, "the agent has its snapshot", || {
        agent.metric("georelay_upstream_connected", &[]) == 1.0
    });
    let nowhere = free_port().to_string();
    let replica = start_replica_kind(
        ServerKind::Redis70,
        &agent.addr(),
        &["--replica-announce-port", &nowhere],
    );
    wait_until(LONG, "the replica is refused", || {
        rdb_refusals(&agent) >= 2.0
    });
    assert!(
        replica
            .log_text()
            .contains("Can't handle RDB format version 11"),
        "the replica did not fail on the first snapshot"
    );
    assert!(replica
        .log_text()
        .contains("never acknowledged the RDB version 11 (REDIS0011) snapshot"));
    assert_eq!(
        agent.metric("georelay_served_full_syncs_total", &[("kind", "redis")]),
        1.0,
        "the snapshot was sent again"
    );
}
