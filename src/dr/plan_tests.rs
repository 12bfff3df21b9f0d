//! Unit tests of the switchover plan: checks, the wait condition, promotion and rollback.

use super::*;
use crate::dr::redis::Replication;
use crate::metrics::status::{LogRow, Status, UpstreamKind, UpstreamRow};

const R: &str = "1111111111111111111111111111111111111111";

fn status(node: &str, kind: UpstreamKind, replica: &str, agent: Option<&str>) -> Status {
    Status {
        node: node.into(),
        replica_addr: replica.into(),
        agent_addr: agent.map(str::to_string),
        upstream: UpstreamRow {
            kind,
            addr: "127.0.0.1:1".into(),
            server_name: None,
            override_in_force: false,
            connected: true,
            upstream_head: 100,
            upstream_head_time_us: 0,
            durable: 100,
            lag_bytes: 0,
            lag_seconds: 0.01,
            heartbeat_age_seconds: Some(0.1),
            last_sync: "partial".into(),
            fenced: None,
        },
        log: LogRow {
            replid: R.into(),
            first: 1,
            head: 100,
            head_time_us: 0,
            durable: 100,
            disk_bytes: 0,
            snapshot_offset: None,
        },
        replicas: vec![],
        agents: vec![],
        shards: vec![],
        cluster: None,
        target: vec![],
    }
}

fn info(text: &str) -> Replication {
    Replication::parse("t:1", &text.replace(' ', "\r\n")).unwrap()
}

fn origin() -> Replication {
    info(&format!(
        "role:master master_replid:{R} master_repl_offset:100"
    ))
}

fn target(master_port: u16, link: &str) -> Replication {
    info(&format!(
        "role:slave master_host:127.0.0.1 master_port:{master_port} master_link_status:{link} master_replid:{R} master_repl_offset:100"
    ))
}

fn sites() -> (Status, Status) {
    (
        status(
            "site-a",
            UpstreamKind::Redis,
            "0.0.0.0:6380",
            Some("0.0.0.0:7443"),
        ),
        status(
            "region-b",
            UpstreamKind::Agent,
            "127.0.0.1:6390",
            Some("0.0.0.0:7444"),
        ),
    )
}

#[test]
fn check_accepts_a_healthy_pair_and_resolves_wildcard_hosts() {
    let (a, b) = sites();
    let c = check(
        &origin(),
        &a,
        "http://127.0.0.2:9187",
        &b,
        "http://127.0.0.3:9188",
        &target(6390, "up"),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(c.region_agent, "127.0.0.3:7444");
    assert_eq!(c.region_name, "region-b");
    assert_eq!(c.site_replica, "127.0.0.2:6380");
    assert_eq!(c.origin_offset, 100);
}

#[test]
fn check_refuses_with_the_reason() {
    let (a, b) = sites();
    let run = |a: &Status, b: &Status, t: &Replication| {
        check(
            &origin(),
            a,
            "http://h:1",
            b,
            "http://h:2",
            t,
            Duration::from_secs(1),
        )
        .unwrap_err()
    };
    // The promote target is down / elsewhere / not linked.
    assert!(run(&a, &b, &target(9999, "up")).contains("not a replica of agent B"));
    assert!(run(&a, &b, &target(6390, "down")).contains("link to agent B is down"));
    let mut lagging = b.clone();
    lagging.upstream.lag_seconds = 5.0;
    assert!(run(&a, &lagging, &target(6390, "up")).contains("lags"));
    let mut other = b.clone();
    other.log.replid = "2".repeat(40);
    assert!(run(&a, &other, &target(6390, "up")).contains("agent B's log is on replid"));
    let mut down = a.clone();
    down.upstream.connected = false;
    assert!(run(&down, &b, &target(6390, "up")).contains("agent A"));
    let mut no_quic = b.clone();
    no_quic.agent_addr = None;
    assert!(run(&a, &no_quic, &target(6390, "up")).contains("listen.agent"));
}

#[test]
fn wait_promotion_and_rollback_rules() {
    assert!(!caught_up(100, 99, 100));
    assert!(!caught_up(100, 100, 99));
    assert!(caught_up(100, 100, 100));
    let p = info(&format!(
        "role:master master_replid:{} master_replid2:{R} master_repl_offset:100 second_repl_offset:101",
        "3".repeat(40)
    ));
    assert!(promoted_ok(&p, R, 100).is_ok());
    assert!(
        promoted_ok(&p, R, 101).is_err(),
        "replid2 must cover the offset reached"
    );
    assert!(promoted_ok(&target(1, "up"), R, 100).is_err());
    assert!(Step::Check.rolls_back() && Step::Fence.rolls_back() && Step::Wait.rolls_back());
    assert!(!Step::Promote.rolls_back() && !Step::Repoint.rolls_back());
    let t = render(&[StepRow {
        step: "check",
        took: Duration::from_micros(1500),
        detail: "ok".into(),
    }]);
    assert!(t.contains("check") && t.contains("1.5 ms"), "{t}");
}

#[test]
fn failover_checks_and_rpo() {
    let (_, b) = sites();
    let base = "http://127.0.0.1:9188";
    assert_eq!(
        check_failover(&b, base, &target(6390, "up")).as_deref(),
        Ok(R)
    );
    assert!(check_failover(&b, base, &target(9999, "up"))
        .unwrap_err()
        .contains("not a replica of agent B"));
    let mut redis = b.clone();
    redis.upstream.kind = UpstreamKind::Redis;
    assert!(check_failover(&redis, base, &target(6390, "up"))
        .unwrap_err()
        .contains("nothing to fail over from"));
    let mut empty = b.clone();
    empty.log.replid = String::new();
    assert!(check_failover(&empty, base, &target(6390, "up"))
        .unwrap_err()
        .contains("no history"));

    let f = crate::metrics::status::FencedSite {
        site: "a:1".into(),
        site_head: 5000,
        site_head_time_us: 10_500_000,
        head: 4000,
        head_time_us: 10_000_000,
        at_unix: 20,
        heard_us: 19_000_000,
    };
    let rpo = Rpo::of(&f, 4000);
    assert_eq!(rpo.bytes, 1000);
    assert!((rpo.seconds - 0.5).abs() < 1e-9);
    assert_eq!(rpo.silent_for, Some(Duration::from_secs(1)));
    assert!(rpo.render().contains("RPO: 1000 bytes"), "{}", rpo.render());
    assert_eq!(
        Rpo::of(&f, 3990).bytes,
        1010,
        "an incomplete command B held is lost too"
    );
    let never = Rpo::of(
        &crate::metrics::status::FencedSite { heard_us: 0, ..f },
        4000,
    );
    assert_eq!(never.silent_for, None);
}
