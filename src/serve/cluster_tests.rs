//! Unit tests of the cluster endpoint's replies, from hand-built slot maps and replica sets.

use std::time::Instant;

use super::*;
use crate::cluster::{LaneSlots, SlotMap};
use crate::resp::{encode, Frame, Proto};

fn map() -> SlotMap {
    let lane = |n: &str, a, b| LaneSlots {
        name: n.into(),
        alias: format!("shard-{n}"),
        ranges: vec![SlotRange::new(a, b)],
    };
    SlotMap::new(
        9,
        vec![
            lane("l0", 0, 5460),
            lane("l1", 5461, 10922),
            lane("l2", 10923, 16383),
        ],
    )
    .unwrap()
}

fn replica(ip: &str, port: u16, state: ReplicaState) -> ReplicaInfo {
    ReplicaInfo {
        ip: ip.into(),
        port,
        state,
        ack_offset: 100,
        fack_offset: 0,
        last_ack: Instant::now(),
        last_sync: "partial",
    }
}

fn view(with_l2: bool) -> ClusterView {
    let m = map();
    ClusterView::build(
        node_id("agent"),
        ("127.0.0.1".into(), 7000),
        Some(&m),
        |lane| match lane {
            "l0" => vec![
                replica("127.0.0.2", 7102, ReplicaState::Online),
                replica("127.0.0.2", 7101, ReplicaState::Online),
                replica("127.0.0.9", 7109, ReplicaState::SendBulk),
            ],
            "l1" => vec![replica("127.0.0.1", 7201, ReplicaState::Online)],
            "l2" if with_l2 => vec![replica("127.0.0.1", 7301, ReplicaState::Online)],
            _ => vec![],
        },
    )
}

fn reply(v: &ClusterView, words: &[&str]) -> Reply {
    let args: Vec<Bytes> = words.iter().map(|w| Bytes::from(w.to_string())).collect();
    handle(v, &args).expect("a cluster command")
}

/// The reply as a RESP2 client reads it.
fn cmd(v: &ClusterView, words: &[&str]) -> Frame {
    let mut b = reply(v, words).to_bytes(Proto::Resp2);
    crate::resp::parse_frame(&mut b, &crate::resp::Limits::default())
        .expect("a valid reply")
        .expect("a whole reply")
}

fn text(f: Frame) -> String {
    match f {
        Frame::Bulk(b) => String::from_utf8(b.to_vec()).unwrap(),
        other => panic!("not a bulk string: {other:?}"),
    }
}

#[test]
fn node_ids_are_40_hex_and_stable() {
    let id = node_id("x");
    assert_eq!(id.len(), 40);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(id, node_id("x"));
    assert_ne!(id, node_id("y"));
}

#[test]
fn slots_map_each_range_to_its_lanes_online_replicas_master_first() {
    let v = view(true);
    let Frame::Array(entries) = cmd(&v, &["CLUSTER", "SLOTS"]) else {
        panic!()
    };
    assert_eq!(entries.len(), 3);
    let Frame::Array(first) = &entries[0] else {
        panic!()
    };
    assert_eq!(first[0], Frame::Integer(0));
    assert_eq!(first[1], Frame::Integer(5460));
    // Two online replicas (the one still loading is not reported), sorted by address.
    assert_eq!(first.len(), 4);
    let Frame::Array(master) = &first[2] else {
        panic!()
    };
    assert_eq!(master[0], Frame::Bulk("127.0.0.2".into()));
    assert_eq!(master[1], Frame::Integer(7101));
    assert_eq!(
        master[2],
        Frame::Bulk(node_id("l0/127.0.0.2:7101").into_bytes().into())
    );
}

#[test]
fn a_lane_without_replicas_leaves_its_slots_uncovered() {
    let v = view(false);
    let Frame::Array(entries) = cmd(&v, &["cluster", "slots"]) else {
        panic!()
    };
    assert_eq!(entries.len(), 2);
    let info = text(cmd(&v, &["cluster", "info"]));
    assert!(info.contains("cluster_state:fail\r\n"), "{info}");
    assert!(info.contains("cluster_slots_assigned:16384\r\n"), "{info}");
    assert!(info.contains("cluster_slots_ok:10923\r\n"), "{info}");
    assert!(info.contains("cluster_slots_fail:5461\r\n"), "{info}");
    let full = text(cmd(&view(true), &["cluster", "info"]));
    assert!(full.contains("cluster_state:ok\r\n"), "{full}");
    assert!(full.contains("cluster_known_nodes:5\r\n"), "{full}");
    assert!(full.contains("cluster_size:3\r\n"), "{full}");
    assert!(full.contains("cluster_current_epoch:9\r\n"), "{full}");
}

#[test]
fn nodes_lists_myself_masters_with_slots_and_their_replicas() {
    let v = view(true);
    let nodes = text(cmd(&v, &["CLUSTER", "NODES"]));
    let lines: Vec<&str> = nodes.lines().collect();
    assert_eq!(lines.len(), 5, "{nodes}");
    assert_eq!(
        lines[0],
        format!(
            "{} 127.0.0.1:7000@17000 myself,master - 0 0 9 connected",
            node_id("agent")
        )
    );
    let m0 = node_id("l0/127.0.0.2:7101");
    assert_eq!(
        lines[1],
        format!("{m0} 127.0.0.2:7101@17101 master - 0 0 9 connected 0-5460")
    );
    assert_eq!(
        lines[2],
        format!(
            "{} 127.0.0.2:7102@17102 slave {m0} 0 0 9 connected",
            node_id("l0/127.0.0.2:7102")
        )
    );
    assert!(lines[4].ends_with(" 10923-16383"), "{}", lines[4]);
}

#[test]
fn shards_have_the_redis_7_shape() {
    let v = view(true);
    let Frame::Array(shards) = cmd(&v, &["CLUSTER", "SHARDS"]) else {
        panic!()
    };
    assert_eq!(shards.len(), 3);
    let Frame::Array(s0) = &shards[0] else {
        panic!()
    };
    assert_eq!(s0[0], Frame::Bulk("slots".into()));
    assert_eq!(
        s0[1],
        Frame::Array(vec![Frame::Integer(0), Frame::Integer(5460)])
    );
    assert_eq!(s0[2], Frame::Bulk("nodes".into()));
    let Frame::Array(nodes) = &s0[3] else {
        panic!()
    };
    assert_eq!(nodes.len(), 2);
    let Frame::Array(n0) = &nodes[0] else {
        panic!()
    };
    let pairs: Vec<(String, Frame)> = n0
        .chunks(2)
        .map(|kv| match &kv[0] {
            Frame::Bulk(k) => (String::from_utf8(k.to_vec()).unwrap(), kv[1].clone()),
            _ => panic!(),
        })
        .collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).unwrap().1.clone();
    assert_eq!(get("port"), Frame::Integer(7101));
    assert_eq!(get("ip"), Frame::Bulk("127.0.0.2".into()));
    assert_eq!(get("role"), Frame::Bulk("master".into()));
    assert_eq!(get("health"), Frame::Bulk("online".into()));
}

#[test]
fn small_commands_and_bad_input() {
    let v = view(true);
    assert_eq!(cmd(&v, &["READONLY"]), Frame::Simple("OK".into()));
    assert_eq!(cmd(&v, &["readwrite"]), Frame::Simple("OK".into()));
    assert_eq!(text(cmd(&v, &["cluster", "myid"])), node_id("agent"));
    assert_eq!(
        cmd(&v, &["cluster", "keyslot", "foo"]),
        Frame::Integer(12182)
    );
    let e = cmd(&v, &["cluster", "addslots", "1"]);
    assert!(
        matches!(&e, Frame::Error(m) if m.starts_with("ERR unknown subcommand 'addslots'")),
        "{e:?}"
    );
    assert!(matches!(cmd(&v, &["cluster"]), Frame::Error(_)));
    assert!(matches!(
        cmd(&v, &["cluster", "slots", "x"]),
        Frame::Error(_)
    ));
    assert!(handle(&v, &[Bytes::from("GET"), Bytes::from("k")]).is_none());
    // Every reply encodes as one RESP frame.
    let mut out = bytes::BytesMut::new();
    encode(&cmd(&v, &["cluster", "shards"]), &mut out);
    assert!(!out.is_empty());
}

#[test]
fn before_any_slot_map_the_cluster_is_empty_and_failed() {
    let v = ClusterView::build(node_id("a"), ("127.0.0.1".into(), 1), None, |_| vec![]);
    assert_eq!(cmd(&v, &["cluster", "slots"]), Frame::Array(vec![]));
    assert!(text(cmd(&v, &["cluster", "info"])).contains("cluster_state:fail"));
}

#[test]
fn under_resp3_shards_are_maps_and_nodes_is_verbatim_text() {
    let v = view(true);
    let shards = reply(&v, &["cluster", "shards"]).to_bytes(Proto::Resp3);
    let text = String::from_utf8_lossy(&shards);
    assert!(text.starts_with("*3\r\n%2\r\n$5\r\nslots\r\n"), "{text}");
    assert!(
        text.contains("$5\r\nnodes\r\n*2\r\n%7\r\n$2\r\nid\r\n"),
        "{text}"
    );
    let nodes = reply(&v, &["cluster", "nodes"]).to_bytes(Proto::Resp3);
    assert!(nodes.starts_with(b"="), "{nodes:?}");
    assert!(nodes[..].windows(4).any(|w| w == b"txt:"));
    let info = reply(&v, &["cluster", "info"]).to_bytes(Proto::Resp3);
    assert!(info.starts_with(b"="), "{info:?}");
    // SLOTS has no RESP3 types: both protocols read the same.
    let slots = reply(&v, &["cluster", "slots"]);
    assert_eq!(slots.to_bytes(Proto::Resp2), slots.to_bytes(Proto::Resp3));
}
