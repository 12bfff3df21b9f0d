//! Integration: WAIT and WAITAOF on a Valkey 9.1 origin whose only replica is the site agent.
//! With `upstream.ack = "remote"`, `WAITAOF 0 1` returns 1 only once region B has fsynced the
//! write, and with B's WAN cut both WAIT and WAITAOF time out with 0; with `ack = "durable"`
//! the same cut leaves both at 1, because the site agent has the write (and fsynced it).
//! Under `remote`, `WAIT 1` counts what B has *received*, and the origin's GETACK makes B
//! fsync at once (a Commit frame): with B never fsyncing by itself (`log.fsync = "no"`),
//! WAITAOF still returns 1, which nothing but that frame can cause.

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

/// Writes `key` and returns the origin's replication offset after it.
fn write(c: &mut Client, key: &str) -> f64 {
    c.cmd(&["SET", key, "v"]);
    support::info_field(c, "replication", "master_repl_offset")
        .parse()
        .expect("offset")
}

/// Origin → site agent (`upstream.ack = ack`) → WAN → region B (`log.fsync = b_fsync`).
fn chain(ack: &str, b_fsync: &str) -> Chain {
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
        "{}[log]\nfsync = \"{b_fsync}\"\n",
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
    let ch = chain("remote", "everysec");
    let mut c = ch.origin.client();
    for i in 0..20 {
        let off = write(&mut c, &format!("k{i}"));
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
    let ch = chain("durable", "everysec");
    ch.wan.cut();
    let mut c = ch.origin.client();
    for i in 0..20 {
        let off = write(&mut c, &format!("k{i}"));
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

#[test]
fn wait_counts_what_region_b_received_and_a_getack_makes_b_fsync_at_once() {
    // B never fsyncs its log by itself (only the snapshot of its full sync is on disk): only
    // the Commit frame the site agent sends on the origin's GETACK can make it durable.
    let ch = chain("remote", "no");
    let mut c = ch.origin.client();
    let b_snapshot = metric(&ch.region, "georelay_log_durable_offset");
    let mut off = 0.0;
    for i in 0..10 {
        off = write(&mut c, &format!("r{i}"));
    }
    // No WAIT yet, so no GETACK: B acknowledges what it received, and has fsynced nothing.
    wait_until(LONG, "the site agent hears B received the writes", || {
        metric(&ch.site, "georelay_downstream_agent_ack_offset") >= off
    });
    let fsynced = metric(&ch.site, "georelay_downstream_agent_fsync_offset");
    assert!(fsynced < off, "B fsynced {fsynced} of {off} by itself");
    assert_eq!(
        metric(&ch.region, "georelay_log_durable_offset"),
        b_snapshot,
        "B fsynced nothing after its snapshot"
    );
    for i in 0..10 {
        let off = write(&mut c, &format!("s{i}"));
        assert_eq!(
            num(&mut c, &["WAIT", "1", "5000"]),
            1,
            "WAIT after write {i}: B has received it"
        );
        let b_head = metric(&ch.region, "georelay_log_head_offset");
        assert!(
            b_head >= off,
            "WAIT returned 1 while B held {b_head} of {off}"
        );
        assert_eq!(
            num(&mut c, &["WAITAOF", "0", "1", "30000"]),
            1,
            "WAITAOF after write {i}: the GETACK made B fsync"
        );
        let b_durable = metric(&ch.region, "georelay_log_durable_offset");
        assert!(
            b_durable >= off,
            "WAITAOF returned 1 while B had fsynced only {b_durable} of {off}"
        );
    }
    let fsynced = metric(&ch.site, "georelay_downstream_agent_fsync_offset");
    assert!(fsynced > b_snapshot, "the site agent saw B's fsyncs");
}
