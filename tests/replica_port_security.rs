//! Integration: a client of the replica port cannot steer the agent. A replica that announces
//! another address with `REPLCONF ip-address` causes no connection there; the agent's release
//! probe goes to the connection's real peer address and carries no password.

mod support;

use std::io::{ErrorKind, Read};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use georelay::resp;
use support::load::write_mixed;
use support::{agent_config, Agent, Client, Redis};

const LONG: Duration = Duration::from_secs(120);

/// A port free on both 127.0.0.2 (the announced decoy) and 127.0.0.1 (the real peer), with
/// listeners the test owns on each.
fn decoy_and_real() -> (TcpListener, TcpListener, u16) {
    for _ in 0..50 {
        let decoy = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2");
        let port = decoy.local_addr().expect("decoy address").port();
        if let Ok(real) = TcpListener::bind(("127.0.0.1", port)) {
            return (decoy, real, port);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

#[test]
fn an_announced_ip_address_gets_no_connection_and_no_password() {
    // Redis 7.0 writes RDB 10, which Redis 6.2 cannot load: the agent asks a replica that
    // does not send REPLCONF version what it runs before a full sync.
    let master = Redis::start(&[]);
    let agent = Agent::start(&agent_config(
        &master.addr(),
        "[serve]\nrequirepass = \"s3cret-pw\"\n",
    ));
    write_mixed(master.port, 0, 1_000, "p");
    agent.wait_metric("georelay_upstream_full_syncs_total", &[], LONG, |v| {
        v >= 1.0
    });

    let (decoy, real, port) = decoy_and_real();
    decoy.set_nonblocking(true).expect("nonblocking decoy");
    real.set_nonblocking(true).expect("nonblocking listener");
    let mut c = Client::connect(agent.redis_port);
    for cmd in [
        vec!["AUTH", "s3cret-pw"],
        vec!["REPLCONF", "ip-address", "127.0.0.2"],
        vec!["REPLCONF", "listening-port", &port.to_string()],
        vec!["REPLCONF", "capa", "eof", "capa", "psync2"],
    ] {
        assert_eq!(c.cmd_str(&cmd), "OK", "{cmd:?}");
    }
    c.send(&["PSYNC", "?", "-1"]);

    // The probe reaches the connection's real peer address (127.0.0.1) on the announced port.
    let start = Instant::now();
    let mut probe = loop {
        match real.accept() {
            Ok((s, from)) => {
                assert!(from.ip().is_loopback(), "probe from {from}");
                break s;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && start.elapsed() < LONG => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the agent never probed the replica's real address: {e}"),
        }
    };
    probe.set_nonblocking(false).expect("blocking probe socket");
    probe
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("probe read timeout");
    let want = resp::command(&[b"INFO", b"server"]);
    let mut got = vec![0u8; want.len()];
    probe.read_exact(&mut got).expect("the probe's request");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want),
        "the probe must send INFO server alone (no AUTH)"
    );
    drop(probe); // no answer: the release stays unknown and the full sync goes ahead

    // The full sync goes ahead (keepalive newlines may come first).
    let mut sock = c.raw();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("client read timeout");
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("+FULLRESYNC") {
        let n = sock.read(&mut chunk).expect("the PSYNC reply");
        assert!(
            n > 0,
            "the agent closed instead of syncing: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&chunk[..n]);
    }
    // The announced address never saw a connection.
    match decoy.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Ok((_, from)) => panic!("the agent connected to the announced 127.0.0.2 (from {from})"),
        Err(e) => panic!("decoy listener: {e}"),
    }
}
