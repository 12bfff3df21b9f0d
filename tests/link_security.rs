//! Integration: who may talk to an agent's QUIC port. Peers with a certificate from another CA
//! or none are refused during the handshake (and logged with their address); a peer with a
//! valid certificate that sends garbage gets a closed link while the agent keeps serving others.

mod support;

use std::time::Duration;

use georelay::link::{quic, tls, TlsFiles};
use support::load::write_mixed;
use support::{
    agent_config, agent_config_from_agent, free_udp_port, start_replica, wait_digests_equal,
    wait_until, Agent, Pki, Redis,
};

const LONG: Duration = Duration::from_secs(120);

fn site(master: &Redis, pki: &Pki, quic: u16) -> Agent {
    Agent::start(&agent_config(
        &master.addr(),
        &format!(
            "agent = \"127.0.0.1:{quic}\"\n{}",
            pki.tls_section("site-a", None)
        ),
    ))
}

#[test]
fn peers_without_a_valid_certificate_are_refused() {
    let pki = Pki::new(&["site-a", "region-b"]);
    let rogue_pki = Pki::new(&["region-b"]);
    let master = Redis::start(&[]);
    let quic = free_udp_port();
    let a = site(&master, &pki, quic);

    // An agent with a certificate from another CA.
    let rogue = Agent::start(&agent_config_from_agent(
        "region-b",
        &format!("127.0.0.1:{quic}"),
        &rogue_pki.tls_section("region-b", Some("site-a")),
    ));
    wait_until(
        LONG,
        "A logs the refused certificate with the peer's address",
        || {
            a.log_text()
                .contains("refused agent connection from 127.0.0.1:")
        },
    );
    assert_eq!(
        rogue.metric("georelay_upstream_connected", &[]),
        0.0,
        "a peer from another CA got through"
    );
    assert_eq!(
        rogue.metric("georelay_log_head_offset", &[]),
        0.0,
        "a peer from another CA received data"
    );
    drop(rogue);

    // A client that presents no certificate at all.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let refused = rt.block_on(async {
        let cfg = tls::client_config_without_cert(&pki.dir.path().join("ca.pem")).unwrap();
        let ep = quic::client_endpoint_with_tls(
            cfg,
            &georelay::config::LinkSettings::default().transport,
        )
        .unwrap();
        let addr = format!("127.0.0.1:{quic}").parse().unwrap();
        let attempt = async {
            let conn = quic::connect(&ep, addr, "site-a").await.ok()?;
            let (mut send, mut recv) = conn.open_bi().await.ok()?;
            send.write_all(b"hello?").await.ok()?;
            let mut buf = [0u8; 16];
            recv.read(&mut buf).await.ok()?
        };
        tokio::time::timeout(Duration::from_secs(20), attempt)
            .await
            .ok()
            .flatten()
            .is_none()
    });
    assert!(
        refused,
        "a client without a certificate could talk to the agent"
    );
    wait_until(LONG, "A counts both refusals", || {
        a.metric(
            "georelay_served_refusals_total",
            &[("kind", "agent"), ("reason", "tls")],
        ) >= 2.0
    });
}

#[test]
fn garbage_frames_close_that_link_only() {
    let pki = Pki::new(&["site-a", "region-b", "region-x"]);
    let master = Redis::start(&[]);
    let quic = free_udp_port();
    let a = site(&master, &pki, quic);
    let b = Agent::start(&agent_config_from_agent(
        "region-b",
        &format!("127.0.0.1:{quic}"),
        &pki.tls_section("region-b", Some("site-a")),
    ));
    let r = start_replica(&b.addr(), &[]);
    write_mixed(master.port, 0, 5_000, "g");
    wait_digests_equal(&master, &[&r], LONG);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let close = rt.block_on(async {
        let files = TlsFiles::in_dir(pki.dir.path(), "region-x");
        let ep =
            quic::client_endpoint(&files, &georelay::config::LinkSettings::default().transport)
                .unwrap();
        let conn = quic::connect(&ep, format!("127.0.0.1:{quic}").parse().unwrap(), "site-a")
            .await
            .unwrap();
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        // A plausible length, then a frame type that does not exist and junk.
        send.write_all(&[9, 0, 0, 0, 0xee, 1, 2, 3, 4, 5, 6, 7, 8])
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(20), conn.closed()).await
    });
    let reason = close.expect("the agent never closed the link after garbage");
    assert!(
        matches!(reason, quinn::ConnectionError::ApplicationClosed(_)),
        "unexpected close: {reason}"
    );
    wait_until(LONG, "A logs the protocol error", || {
        a.log_text().contains("protocol error")
    });

    write_mixed(master.port, 5_000, 15_000, "g");
    wait_digests_equal(&master, &[&r], LONG);
    assert_eq!(
        support::http_get(a.admin_port, "/healthz").map(|x| x.0),
        Some(200)
    );
}
