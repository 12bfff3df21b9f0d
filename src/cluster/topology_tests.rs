//! Topology parsers against replies captured from real servers (tests/fixtures/cluster/).

use super::*;
use bytes::BytesMut;

fn frame(bytes: &[u8]) -> Frame {
    let mut buf = BytesMut::from(bytes);
    crate::resp::parse_frame(&mut buf, &Default::default())
        .expect("valid RESP")
        .expect("complete frame")
}

fn bulk_text(bytes: &[u8]) -> String {
    match frame(bytes) {
        Frame::Bulk(b) => String::from_utf8(b.to_vec()).unwrap(),
        other => panic!("not a bulk: {other:?}"),
    }
}

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/cluster/",
            $name
        ))
    };
}

fn check_three_shards(t: &Topology) {
    let mut slots: Vec<Vec<(u16, u16)>> = t
        .shards
        .iter()
        .map(|s| s.slots.iter().map(|r| (r.first, r.last)).collect())
        .collect();
    slots.sort();
    assert_eq!(
        slots,
        vec![vec![(0, 5460)], vec![(5461, 10922)], vec![(10923, 16383)]]
    );
    for s in &t.shards {
        let m = s.master().expect("a healthy master");
        assert_eq!(m.ip, "127.0.0.1");
        assert_eq!(m.id.len(), 40);
        assert_eq!(s.replicas().count(), 1, "{s:?}");
    }
    assert!(t.uncovered().is_empty());
}

#[test]
fn redis70_cluster_shards() {
    let t = parse_shards(&frame(fixture!("redis70_shards.resp"))).unwrap();
    check_three_shards(&t);
    assert!(
        t.shards.iter().all(|s| s.id.is_none()),
        "7.0 reports no shard id"
    );
    let mut ports: Vec<u16> = t.shards.iter().map(|s| s.master().unwrap().port).collect();
    ports.sort();
    assert_eq!(ports, vec![31000, 31001, 31002]);
}

#[test]
fn valkey91_cluster_shards_carry_a_shard_id() {
    let t = parse_shards(&frame(fixture!("valkey91_shards.resp"))).unwrap();
    check_three_shards(&t);
    assert!(t
        .shards
        .iter()
        .all(|s| s.id.as_ref().is_some_and(|i| i.len() == 40)));
}

#[test]
fn cluster_nodes_on_every_version() {
    for raw in [
        &fixture!("redis62_nodes.resp")[..],
        fixture!("redis70_nodes.resp"),
        fixture!("valkey91_nodes.resp"),
    ] {
        let t = parse_nodes(&bulk_text(raw)).unwrap();
        check_three_shards(&t);
    }
}

#[test]
fn killed_master_replaced_by_its_replica() {
    // Redis 7.0: the failed master is listed as a shard of its own with no slots.
    let t = parse_shards(&frame(fixture!("redis70_shards_failover.resp"))).unwrap();
    let with_master: Vec<&Shard> = t.shards.iter().filter(|s| s.master().is_some()).collect();
    assert_eq!(with_master.len(), 3);
    assert!(t.uncovered().is_empty());
    let dead: Vec<&Node> = t
        .shards
        .iter()
        .flat_map(|s| &s.nodes)
        .filter(|n| !n.healthy)
        .collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].port, 31001);
    // Redis 6.2 through CLUSTER NODES: the promoted replica owns the slots.
    let t = parse_nodes(&bulk_text(fixture!("redis62_nodes_failover.resp"))).unwrap();
    let s = t
        .shards
        .iter()
        .find(|s| s.slots == vec![SlotRange::new(5461, 10922)])
        .unwrap();
    assert_eq!(s.master().unwrap().port, 31205);
    assert!(t.uncovered().is_empty());
    let r = parse_shards(&frame(fixture!("redis70_shards_replica_down.resp"))).unwrap();
    assert_eq!(r.shards.iter().filter(|s| s.master().is_some()).count(), 3);
}

#[test]
fn migration_markers_leave_the_slot_with_its_owner() {
    for raw in [
        &fixture!("redis62_nodes_migrating.resp")[..],
        fixture!("redis62_nodes_importing.resp"),
    ] {
        let t = parse_nodes(&bulk_text(raw)).unwrap();
        let owner = t
            .shards
            .iter()
            .find(|s| s.slots.contains(&SlotRange::new(0, 5460)))
            .unwrap();
        assert!(owner.master().is_some());
    }
}

#[test]
fn failed_shard_leaves_slots_uncovered() {
    let t = parse_nodes(&bulk_text(fixture!("redis62_nodes_fail.resp"))).unwrap();
    assert_eq!(t.uncovered(), vec![SlotRange::new(5461, 10922)]);
    assert_eq!(
        cluster_state_ok(&bulk_text(fixture!("redis62_info_fail.resp"))),
        Some(false)
    );
    assert_eq!(
        cluster_state_ok("cluster_state:ok\r\ncluster_size:3\r\n"),
        Some(true)
    );
}

#[test]
fn errors_are_classified() {
    let err = |raw: &[u8]| match frame(raw) {
        Frame::Error(e) => classify_error("127.0.0.1:1", &e),
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        err(fixture!("redis62_shards_error.resp")),
        TopologyError::ShardsUnsupported(_)
    ));
    for raw in [
        &fixture!("standalone_shards_error.resp")[..],
        fixture!("standalone_nodes_error.resp"),
        fixture!("standalone62_nodes_error.resp"),
    ] {
        let e = err(raw);
        assert!(matches!(e, TopologyError::NotCluster(..)), "{e:?}");
        assert!(e.to_string().contains("use upstream.redis"), "{e}");
    }
    assert!(matches!(
        classify_error("a", "MOVED 3999 127.0.0.1:6381"),
        TopologyError::Redirect(_)
    ));
    assert!(matches!(
        parse_shards(&Frame::Error("ASK 1 127.0.0.1:2".into())),
        Err(TopologyError::Redirect(_))
    ));
    // Redis 6+/7 and Valkey: no password sent, a wrong one, a wrong user.
    for msg in [
        "NOAUTH Authentication required.",
        "WRONGPASS invalid username-password pair or user is disabled.",
        "ERR invalid password",
    ] {
        let e = classify_error("127.0.0.1:7000", msg);
        assert!(matches!(e, TopologyError::Auth(..)), "{msg}: {e:?}");
        assert!(e.to_string().contains("upstream.password"), "{e}");
    }
}

#[test]
fn bad_replies_never_panic() {
    let cases = [
        Frame::Integer(3),
        Frame::Array(vec![Frame::Integer(1)]),
        Frame::Array(vec![Frame::Array(vec![Frame::Bulk("slots".into())])]),
        Frame::Array(vec![Frame::Array(vec![
            Frame::Bulk("slots".into()),
            Frame::Array(vec![Frame::Integer(5), Frame::Integer(99999)]),
        ])]),
    ];
    for c in cases {
        assert!(parse_shards(&c).is_err(), "{c:?}");
    }
    assert!(parse_nodes("abc 1.2.3.4 master").is_err());
    assert!(parse_nodes("a 1.2.3.4:1@2 master - 0 0 1 connected 9-x").is_err());
    assert!(parse_nodes("").unwrap().shards.is_empty());
}

#[test]
fn replication_lineage() {
    let promoted = parse_repl_info(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cluster/redis70_info_replication_promoted.txt"
    )))
    .unwrap();
    assert!(promoted.master);
    let old = "e1c6780c2c94b1977472debada62d1f7c6648ad2";
    assert_eq!(promoted.replid2.as_deref(), Some(old));
    assert_eq!(promoted.second_offset, Some(71));
    assert!(promoted.continues(old, 71), "the old stream up to its end");
    assert!(
        !promoted.continues(old, 72),
        "beyond what the promoted node had"
    );
    assert!(promoted.continues("7f280a9ac46d15ab5d55e1aae789e3feb7d31beb", 500));
    let fresh = parse_repl_info(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cluster/valkey91_info_replication.txt"
    )))
    .unwrap();
    assert!(fresh.replid2.is_none() && fresh.second_offset.is_none());
    assert!(!fresh.continues(old, 1));
    assert!(parse_repl_info("role:master\r\n").is_err());
}

#[test]
fn a_node_without_an_address_is_listed_unhealthy() {
    // A fresh node that has not learned its own IP yet (no MEET): `"ip": ""`.
    let raw = b"*1\r\n*4\r\n$5\r\nslots\r\n*0\r\n$5\r\nnodes\r\n*1\r\n*10\r\n$2\r\nid\r\n$40\r\n6f392166dd9e0f025d36db302bff6f9a798cdfef\r\n$2\r\nip\r\n$0\r\n\r\n$4\r\nport\r\n:7000\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$6\r\nhealth\r\n$6\r\nonline\r\n";
    let t = parse_shards(&frame(raw)).unwrap();
    let n = &t.shards[0].nodes[0];
    assert!(n.master && !n.healthy, "{n:?}");
    assert_eq!(t.shards[0].master(), None);
}
