//! Integration: WAIT and WAITAOF on a Valkey 9.1 origin whose only replica is the site agent.
//! With `upstream.ack = "remote"`, `WAITAOF 0 1` returns 1 only once region B has fsynced the
//! write, and with B's WAN cut both WAIT and WAITAOF time out with 0; with `ack = "durable"`
//! the same cut leaves both at 1, because the site agent has the write (and fsynced it).

mod support;

use std::time::Duration;

use support::servers::ServerKind;
use support::{
    agent_config_from_agent, frame_text, free_udp_port, wait_until, Agent, Client, Pki, Redis,
    WanSimProc,
};

const LONG: Duration = Duration::from_secs(60);

fn site_config(origin: &str, ack: &str, quic: u16, tls: &str) -> String {
    format!(
        "name = \"site-a\"\ndata_dir = \"{{data_dir}}\"\n[upstream]\nredis = \"{origin}\"\nack = \"{ack}\"\n\
         [listen]\nredis = \"127.0.0.1:{{redis_port}}\"\nadmin = \"127.0.0.1:{{admin_port}}\"\n\
         agent = \"127.0.0.1:{quic}\"\n{tls}"
    )
}

/// Scrapes a metric strictly: the scrape must work and the metric must exist.
fn metric(agent: &Agent, name: &str) -> f64 {
    let (code, body) = support::http_get(agent.admin_port, "/metrics").expect("scrape /metrics");
    assert_eq!(code, 200);
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

fn num(c: &mut Client, args: &[&str]) -> i64 {
    let f = c.cmd(args);
    let t = frame_text(&f);
    t.split_whitespace()
        .last()
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("{args:?} answered {t}"))
}

struct Chain {
    origin: Redis,
    site: Agent,
    region: Agent,
    wan: WanSimProc,
    _pki: Pki,
}

fn chain(ack: &str) -> Chain {
    let pki = Pki::new(&["site-a", "region-b"]);
    let origin = Redis::start_kind(ServerKind::Valkey91, &["--appendonly", "yes"]);
    let quic = free_udp_port();
    let site = Agent::start(&site_config(
        &origin.addr(),
        ack,
        quic,
        &pki.tls_section("site-a", None),
    ));
    let wan = WanSimProc::start(quic, &[]);
    let region = Agent::start(&format!(
        "{}[log]\nfsync = \"everysec\"\n",
        agent_config_from_agent(
            "region-b",
            &wan.addr(),
            &pki.tls_section("region-b", Some("site-a")),
        )
    ));
    let mut c = origin.client();
    wait_until(
        LONG,
        "the site agent is the origin's replica and B streams",
        || {
            support::info_field(&mut c, "replication", "connected_slaves") == "1"
                && metric(&region, "georelay_upstream_connected") == 1.0
        },
    );
    Chain {
        origin,
        site,
        region,
        wan,
        _pki: pki,
    }
}

#[test]
fn waitaof_with_remote_ack_means_fsynced_in_region_b() {
    let ch = chain("remote");
    let mut c = ch.origin.client();
    for i in 0..20 {
        c.cmd(&["SET", &format!("k{i}"), "v"]);
        let off: f64 = support::info_field(&mut c, "replication", "master_repl_offset")
            .parse()
            .expect("offset");
        assert_eq!(
            num(&mut c, &["WAITAOF", "0", "1", "5000"]),
            1,
            "WAITAOF after write {i}"
        );
        let b_durable = metric(&ch.region, "georelay_log_durable_offset");
        assert!(
            b_durable >= off,
            "WAITAOF returned 1 while region B had fsynced only {b_durable} of {off}"
        );
        assert_eq!(num(&mut c, &["WAIT", "1", "5000"]), 1);
    }
    // The site agent tracks what the slowest downstream agent made durable.
    assert!(metric(&ch.site, "georelay_downstream_agent_ack_offset") > 0.0);

    ch.wan.cut();
    c.cmd(&["SET", "cut", "1"]);
    assert_eq!(
        num(&mut c, &["WAITAOF", "0", "1", "1000"]),
        0,
        "B is cut off"
    );
    assert_eq!(num(&mut c, &["WAIT", "1", "1000"]), 0, "B is cut off");
    ch.wan.restore();
    assert_eq!(
        num(&mut c, &["WAITAOF", "0", "1", "30000"]),
        1,
        "B caught up"
    );
}

#[test]
fn waitaof_with_durable_ack_means_fsynced_at_the_site_agent() {
    let ch = chain("durable");
    ch.wan.cut();
    let mut c = ch.origin.client();
    for i in 0..20 {
        c.cmd(&["SET", &format!("k{i}"), "v"]);
        let off: f64 = support::info_field(&mut c, "replication", "master_repl_offset")
            .parse()
            .expect("offset");
        assert_eq!(
            num(&mut c, &["WAIT", "1", "5000"]),
            1,
            "WAIT after write {i}"
        );
        assert_eq!(
            num(&mut c, &["WAITAOF", "0", "1", "5000"]),
            1,
            "WAITAOF after write {i}"
        );
        let a_durable = metric(&ch.site, "georelay_log_durable_offset");
        assert!(a_durable >= off, "site agent fsynced {a_durable} of {off}");
    }
}
