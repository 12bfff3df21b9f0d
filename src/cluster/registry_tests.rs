//! Lane assignment: new shards, failovers (lineage and node ids), partitions, departures.

use super::*;
use crate::cluster::slotmap::SlotRange;
use crate::cluster::topology::Node;

fn node(id: &str, port: u16, master: bool, healthy: bool) -> Node {
    Node {
        id: id.into(),
        ip: "127.0.0.1".into(),
        port,
        tls_port: None,
        master,
        healthy,
        syncing: false,
    }
}

fn shard(id: Option<&str>, slots: (u16, u16), nodes: Vec<Node>) -> Shard {
    Shard {
        id: id.map(str::to_string),
        slots: vec![SlotRange::new(slots.0, slots.1)],
        nodes,
    }
}

fn repl(replid: &str, replid2: Option<&str>, second: Option<u64>) -> Option<ReplInfo> {
    Some(ReplInfo {
        master: true,
        replid: replid.into(),
        replid2: replid2.map(str::to_string),
        second_offset: second,
        offset: 100,
    })
}

const PORTS: PortRange = PortRange {
    first: 7100,
    last: 7102,
};

fn three() -> Vec<Seen> {
    (0..3u16)
        .map(|i| Seen {
            shard: shard(
                None,
                (i * 100, i * 100 + 99),
                vec![
                    node(&format!("m{i}"), 7000 + i, true, true),
                    node(&format!("r{i}"), 7010 + i, false, true),
                ],
            ),
            repl: repl(&format!("id{i}"), None, None),
        })
        .collect()
}

#[test]
fn new_shards_get_lanes_and_ports_in_creation_order() {
    let mut reg = Registry::default();
    let a = assign(&mut reg, &three(), &HashMap::new(), None, PORTS);
    assert_eq!(a.created, vec![0, 1, 2]);
    let names: Vec<_> = reg
        .lanes
        .iter()
        .map(|l| (l.name.as_str(), l.alias.as_str(), l.port))
        .collect();
    assert_eq!(
        names,
        vec![
            ("m0", "shard-0", Some(7100)),
            ("m1", "shard-1", Some(7101)),
            ("m2", "shard-2", Some(7102))
        ]
    );
    // Same topology again: nothing new, same lanes.
    let b = assign(&mut reg, &three(), &HashMap::new(), None, PORTS);
    assert!(b.created.is_empty() && b.gone.is_empty());
    assert_eq!(b.lanes, HashMap::from([(0, 0), (1, 1), (2, 2)]));
    // A fourth shard finds the range full: a lane without a port, said so by its None.
    let mut four = three();
    four.push(Seen {
        shard: shard(None, (500, 599), vec![node("m3", 7003, true, true)]),
        repl: repl("id3", None, None),
    });
    let c = assign(&mut reg, &four, &HashMap::new(), None, PORTS);
    assert_eq!(c.created, vec![3]);
    assert_eq!(reg.lanes[3].port, None);
}

#[test]
fn a_promoted_replica_continues_its_lane_by_lineage() {
    let mut reg = Registry::default();
    assign(&mut reg, &three(), &HashMap::new(), None, PORTS);
    let history = HashMap::from([(
        "m1".to_string(),
        vec![HistoryEntry {
            replid: "id1".into(),
            start: 1,
        }],
    )]);
    // Shard 1 failed over: r1 is master with replid2 = id1; m1 listed alone, failed (7.0).
    let mut seen = three();
    seen[1] = Seen {
        shard: shard(None, (100, 199), vec![node("r1", 7011, true, true)]),
        repl: repl("new1", Some("id1"), Some(500)),
    };
    seen.push(Seen {
        shard: Shard {
            id: None,
            slots: vec![],
            nodes: vec![node("m1", 7001, true, false)],
        },
        repl: None,
    });
    seen.swap(1, 3); // the dead master listed first must not win
    let a = assign(&mut reg, &seen, &history, None, PORTS);
    assert!(a.created.is_empty(), "{:?}", reg.lanes);
    assert_eq!(a.lanes[&1], 3, "lane m1 follows r1's shard");
    // Without any history yet, node ids find the same answer.
    let mut reg2 = Registry::default();
    assign(&mut reg2, &three(), &HashMap::new(), None, PORTS);
    let a = assign(&mut reg2, &seen, &HashMap::new(), None, PORTS);
    assert!(a.created.is_empty());
    assert_eq!(a.lanes[&1], 3);
}

#[test]
fn lineage_beats_slots_and_ids() {
    let mut reg = Registry::default();
    assign(&mut reg, &three(), &HashMap::new(), None, PORTS);
    // A brand-new node (unknown id) whose replid2 is lane m2's stream, within second offset.
    let mut seen = three();
    seen[2] = Seen {
        shard: shard(None, (0, 5), vec![node("zz", 7020, true, true)]),
        repl: repl("fresh", Some("id2"), Some(10)),
    };
    let history = HashMap::from([(
        "m2".to_string(),
        vec![HistoryEntry {
            replid: "id2".into(),
            start: 1,
        }],
    )]);
    let a = assign(&mut reg, &seen, &history, None, PORTS);
    assert_eq!(a.lanes[&2], 2);
    assert!(a.created.is_empty());
}

#[test]
fn lanes_wait_without_a_master_and_retire_when_gone() {
    let mut reg = Registry::default();
    assign(&mut reg, &three(), &HashMap::new(), None, PORTS);
    let mut seen = three();
    // Shard 0: master and replica failed, no replacement.
    seen[0]
        .shard
        .nodes
        .iter_mut()
        .for_each(|n| n.healthy = false);
    seen[0].repl = None;
    // Shard 2 left the cluster.
    seen.pop();
    let a = assign(&mut reg, &seen, &HashMap::new(), None, PORTS);
    assert_eq!(a.lanes.get(&0), Some(&0), "waits on its shard");
    assert!(seen[a.lanes[&0]].shard.master().is_none());
    assert_eq!(a.gone, vec![2]);
}

#[test]
fn partitions_take_disjoint_lanes() {
    let mut regs: Vec<Registry> = vec![Registry::default(); 2];
    for (i, reg) in regs.iter_mut().enumerate() {
        let part = LanePart { i: i as u32, n: 2 };
        assign(reg, &three(), &HashMap::new(), Some(part), PORTS);
    }
    for l in 0..3 {
        let takers = regs.iter().filter(|r| r.lanes[l].taken).count();
        assert_eq!(takers, 1, "lane {l}");
        for r in &regs {
            assert_eq!(r.lanes[l].port.is_some(), r.lanes[l].taken);
        }
    }
}

#[test]
fn valkey_shard_ids_name_lanes_and_survive_a_full_replacement() {
    let mut reg = Registry::default();
    let mut seen = three();
    for (i, s) in seen.iter_mut().enumerate() {
        s.shard.id = Some(format!("shard{i}"));
    }
    assign(&mut reg, &seen, &HashMap::new(), None, PORTS);
    assert_eq!(reg.lanes[1].name, "shard1");
    // Every node of shard1 replaced by new ids, same shard id.
    seen[1].shard.nodes = vec![node("n1", 7030, true, true)];
    seen[1].repl = repl("other", None, None);
    let a = assign(&mut reg, &seen, &HashMap::new(), None, PORTS);
    assert!(a.created.is_empty());
    assert_eq!(a.lanes[&1], 1);
}

#[test]
fn registry_round_trips_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(Registry::load(dir.path()).unwrap(), Registry::default());
    let mut reg = Registry::default();
    assign(&mut reg, &three(), &HashMap::new(), None, PORTS);
    reg.save(dir.path()).unwrap();
    assert_eq!(Registry::load(dir.path()).unwrap(), reg);
    std::fs::write(dir.path().join(FILE), b"{nope").unwrap();
    let e = Registry::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("is not valid"), "{e}");
}

#[test]
fn a_changed_part_hands_lanes_over_and_keeps_ports() {
    // One agent took every lane (no part); then the cluster is split between two agents.
    let mut a = Registry::default();
    assign(&mut a, &three(), &HashMap::new(), None, PORTS);
    let ports: Vec<_> = a.lanes.iter().map(|l| l.port).collect();
    let half = |i| Some(LanePart { i, n: 2 });
    let changed = a.repartition(half(0), PORTS);
    let mut b = Registry::default();
    assign(&mut b, &three(), &HashMap::new(), half(1), PORTS);
    for (l, port) in ports.iter().enumerate() {
        assert_ne!(a.lanes[l].taken, b.lanes[l].taken, "lane {l} has one taker");
        assert_eq!(changed.contains(&l), !a.lanes[l].taken);
        assert_eq!(a.lanes[l].port, *port, "lane {l} keeps its port");
    }
    assert!(
        !changed.is_empty() && changed.len() < 3,
        "the hash splits three()"
    );
    // Back to one agent: every lane is followed again, on the port it always had.
    a.repartition(None, PORTS);
    assert!(a.lanes.iter().all(|l| l.taken));
    assert_eq!(a.lanes.iter().map(|l| l.port).collect::<Vec<_>>(), ports);
    // A lane first seen as another agent's gets the next free port once it is this one's.
    let free = b
        .lanes
        .iter()
        .position(|l| !l.taken)
        .expect("b leaves a lane to a");
    b.repartition(None, PORTS);
    assert!(b.lanes[free].port.is_some());
    let mut used: Vec<_> = b.lanes.iter().filter_map(|l| l.port).collect();
    used.sort_unstable();
    used.dedup();
    assert_eq!(used.len(), 3, "ports stay distinct: {used:?}");
}
