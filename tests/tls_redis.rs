//! Integration: TLS on both Redis links — the agent replicates a real redis-server over its
//! `--tls-port`, and serves a real replica that uses `tls-replication yes` on `listen.redis_tls`,
//! requiring a client certificate from the CA.

mod support;

use std::time::Duration;

use support::load::write_mixed;
use support::{agent_config, free_port, wait_digests_equal, wait_until, Agent, Redis};

const LONG: Duration = Duration::from_secs(120);

#[test]
fn tls_from_the_master_and_to_the_replicas() {
    let pki = tempfile::tempdir().unwrap();
    georelay::link::certs::make_test_pki(pki.path(), &["redis", "agent", "replica"]).unwrap();
    let p = |f: &str| pki.path().join(f).display().to_string();
    let tls_port = free_port();
    let master = Redis::start(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &p("redis.pem"),
        "--tls-key-file",
        &p("redis.key"),
        "--tls-ca-cert-file",
        &p("ca.pem"),
        "--tls-auth-clients",
        "yes",
    ]);
    let replica_tls_port = free_port();
    let upstream = format!("127.0.0.1:{tls_port}");
    let config = agent_config(
        &upstream,
        &format!(
            "redis_tls = \"127.0.0.1:{replica_tls_port}\"\n[serve]\ntls_cert = \"{}\"\ntls_key = \"{}\"\ntls_ca = \"{}\"\n",
            p("agent.pem"),
            p("agent.key"),
            p("ca.pem")
        ),
    )
    .replacen(
        "[upstream]\n",
        &format!("[upstream]\ntls = true\ntls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n", p("ca.pem"), p("agent.pem"), p("agent.key")),
        1,
    );
    let agent = Agent::start(&config);
    wait_until(LONG, "the agent streams from the master over TLS", || {
        agent.metric("georelay_upstream_connected", &[]) == 1.0
    });

    let replica = Redis::start(&[
        "--replicaof",
        "127.0.0.1",
        &replica_tls_port.to_string(),
        "--tls-replication",
        "yes",
        "--tls-cert-file",
        &p("replica.pem"),
        "--tls-key-file",
        &p("replica.key"),
        "--tls-ca-cert-file",
        &p("ca.pem"),
    ]);
    write_mixed(master.port, 0, 5_000, "tls");
    wait_digests_equal(&master, &[&replica], LONG);

    // A TLS replica whose certificate comes from another CA is refused during the handshake.
    let rogue = tempfile::tempdir().unwrap();
    georelay::link::certs::make_test_pki(rogue.path(), &["replica"]).unwrap();
    let r = |f: &str| rogue.path().join(f).display().to_string();
    let anonymous = Redis::start(&[
        "--replicaof",
        "127.0.0.1",
        &replica_tls_port.to_string(),
        "--tls-replication",
        "yes",
        "--tls-cert-file",
        &r("replica.pem"),
        "--tls-key-file",
        &r("replica.key"),
        "--tls-ca-cert-file",
        &p("ca.pem"),
    ]);
    wait_until(
        LONG,
        "the agent refuses the replica with a foreign certificate",
        || {
            agent
                .log_text()
                .contains("TLS handshake on the replica port failed")
        },
    );
    assert_eq!(
        anonymous.info_field("replication", "master_link_status"),
        "down"
    );
}
