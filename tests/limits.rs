//! Integration: auth and limits on both ports. ACL-style username on the replica port, caps on
//! connections, replicas and downstream agents (each refused clearly), and a handshake
//! deadline so a slowloris client cannot pin a connection.

mod support;

use std::io::Read;
use std::time::{Duration, Instant};

use support::load::write_mixed;
use support::{
    agent_config, agent_config_from_agent, free_udp_port, start_replica, wait_digests_equal,
    wait_until, Agent, Client, Pki, Redis,
};

const LONG: Duration = Duration::from_secs(120);

/// True when the server closes the connection within `limit`.
fn closed_within(c: &mut Client, limit: Duration) -> bool {
    let start = Instant::now();
    let mut sock = c.raw().try_clone().expect("clone socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        match sock.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn slowloris_and_connection_caps_on_the_replica_port() {
    let master = Redis::start(&[]);
    let agent = Agent::start(&agent_config(
        &master.addr(),
        "[serve]\ntimeout = \"1s\"\nmax_connections = 3\nmax_replicas = 1\n",
    ));
    // A client dripping half a command is cut off at the handshake deadline.
    let mut slow = Client::connect(agent.redis_port);
    slow.send_raw(b"*1\r\n$4\r\nPI").unwrap();
    assert!(
        closed_within(&mut slow, Duration::from_secs(20)),
        "a half-sent command pinned the connection"
    );

    // The fourth connection at once is refused clearly.
    let mut held: Vec<Client> = (0..3).map(|_| Client::connect(agent.redis_port)).collect();
    for c in held.iter_mut() {
        assert_eq!(c.cmd_str(&["PING"]), "PONG");
    }
    let mut extra = Client::connect(agent.redis_port);
    let reply =
        String::from_utf8_lossy(&extra.read_until_close(Duration::from_secs(10))).into_owned();
    assert!(
        reply.starts_with("-ERR max number of clients"),
        "got {reply:?}"
    );
    drop(held);

    // One replica at most: a second PSYNC is refused.
    wait_until(LONG, "the agent has a snapshot", || {
        agent.metric("georelay_upstream_connected", &[]) == 1.0
    });
    let mut first = Client::connect(agent.redis_port);
    first.send(&["PSYNC", "?", "-1"]);
    wait_until(LONG, "the first replica is registered", || {
        agent.metric("georelay_connected_replicas", &[]) == 1.0
    });
    let mut second = Client::connect(agent.redis_port);
    second.send(&["PSYNC", "?", "-1"]);
    let reply =
        String::from_utf8_lossy(&second.read_until_close(Duration::from_secs(10))).into_owned();
    assert!(
        reply.contains("-ERR max number of replicas"),
        "got {reply:?}"
    );
    assert!(
        agent.metric(
            "georelay_served_refusals_total",
            &[("reason", "max_replicas")]
        ) >= 1.0
    );
    assert!(
        agent.metric(
            "georelay_served_refusals_total",
            &[("reason", "max_connections")]
        ) >= 1.0
    );
    assert_eq!(
        support::http_get(agent.admin_port, "/healthz").map(|r| r.0),
        Some(200)
    );
}

#[test]
fn acl_style_username_on_the_replica_port() {
    let master = Redis::start(&[]);
    let agent = Agent::start(&agent_config(
        &master.addr(),
        "[serve]\nrequirepass = \"pw\"\nusername = \"replicator\"\n",
    ));
    let mut c = Client::connect(agent.redis_port);
    assert!(
        c.cmd_str(&["AUTH", "pw"]).starts_with("WRONGPASS"),
        "AUTH <pass> must name the user"
    );
    assert!(c
        .cmd_str(&["AUTH", "default", "pw"])
        .starts_with("WRONGPASS"));
    assert_eq!(c.cmd_str(&["AUTH", "replicator", "pw"]), "OK");
    let replica = start_replica(
        &agent.addr(),
        &["--masteruser", "replicator", "--masterauth", "pw"],
    );
    write_mixed(master.port, 0, 2_000, "acl");
    wait_digests_equal(&master, &[&replica], LONG);
}

#[test]
fn downstream_agents_beyond_the_cap_are_refused() {
    let pki = Pki::new(&["site-a", "region-b", "region-c"]);
    let master = Redis::start(&[]);
    let quic = free_udp_port();
    let a = Agent::start(&agent_config(
        &master.addr(),
        &format!(
            "agent = \"127.0.0.1:{quic}\"\n[serve]\nmax_agents = 1\n{}",
            pki.tls_section("site-a", None)
        ),
    ));
    let b = Agent::start(&agent_config_from_agent(
        "region-b",
        &format!("127.0.0.1:{quic}"),
        &pki.tls_section("region-b", Some("site-a")),
    ));
    wait_until(LONG, "B streams", || {
        b.metric("georelay_upstream_connected", &[]) == 1.0
    });
    let c = Agent::start(&agent_config_from_agent(
        "region-c",
        &format!("127.0.0.1:{quic}"),
        &pki.tls_section("region-c", Some("site-a")),
    ));
    wait_until(LONG, "A refuses C and says why", || {
        a.log_text()
            .contains("refused agent region-c: serve.max_agents")
    });
    wait_until(LONG, "C reports the refusal", || {
        c.log_text().contains("max agents reached")
    });
    assert_eq!(c.metric("georelay_upstream_connected", &[]), 0.0);
    assert_eq!(
        b.metric("georelay_upstream_connected", &[]),
        1.0,
        "the refusal disturbed B"
    );
}

#[test]
fn a_replica_that_stops_reading_is_dropped_without_growing_memory() {
    let master = Redis::start(&[]);
    let agent = Agent::start(&agent_config(&master.addr(), "[serve]\ntimeout = \"2s\"\n"));
    wait_until(LONG, "the agent streams", || {
        agent.metric("georelay_upstream_connected", &[]) == 1.0
    });
    // A "replica" that keeps acknowledging but never reads what it is sent.
    let mut stuck = Client::connect(agent.redis_port);
    stuck.send(&["PSYNC", "?", "-1"]);
    let mut acker = stuck.raw().try_clone().expect("clone socket");
    let acks = std::thread::spawn(move || {
        use std::io::Write;
        for _ in 0..120 {
            if acker
                .write_all(b"*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$1\r\n0\r\n")
                .is_err()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    support::load::write_sets(master.port, 40_000, 1024, "stuck");
    wait_until(LONG, "the stuck replica is dropped as too slow", || {
        agent.metric("georelay_replicas_dropped_total", &[("reason", "slow")]) >= 1.0
    });
    let rss = agent.peak_rss_kib().expect("agent RSS");
    assert!(
        rss < 128 * 1024,
        "the agent buffered for a stuck replica: peak RSS {rss} KiB"
    );
    drop(stuck);
    let _ = acks.join();
}
