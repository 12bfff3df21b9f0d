//! Exactly once into a cluster target (pure): one checkpoint key per target slot, hashtagged
//! to it (a short tag found once by brute force over CRC16), the lane floor key, the target's
//! slot → master map and its redirections, and the plan that turns a stream batch into
//! per-slot transactions — skipping what each slot's checkpoint says is already applied.
//!
//! The rule: the checkpoint of slot *s* holds the last origin offset whose commands for *s*
//! are in the target (set in the same `MULTI … EXEC` as them); the **floor** (the lane's
//! own key) holds an offset up to which *every* slot and every keyless command is applied.
//! A start resumes the log at floor + 1 and skips, per slot, commands at or below the slot's
//! checkpoint. Keyless commands are barriers: applied on every master after everything
//! before them, before anything after them, then the floor moves past them; replaying one
//! after a crash (the window between the masters' replies and the floor) gives the same target.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::Bytes;

use super::keys::{route, Keyless, Routed};
use super::stream::Op;
use crate::cluster::topology::Topology;
use crate::cluster::{key_slot, SLOTS};

const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// The shortest alphanumeric tag hashing to each slot (computed once).
pub fn slot_tags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(find_tags)
}

fn find_tags() -> Vec<String> {
    let mut tags: Vec<Option<String>> = vec![None; usize::from(SLOTS)];
    let mut left = usize::from(SLOTS);
    let base = ALPHABET.len();
    for len in 1..=4u32 {
        for mut n in 0..base.pow(len) {
            let mut tag = Vec::with_capacity(len as usize);
            for _ in 0..len {
                tag.push(ALPHABET[n % base]);
                n /= base;
            }
            let slot = usize::from(key_slot(&tag));
            if tags[slot].is_none() {
                tags[slot] = Some(String::from_utf8_lossy(&tag).into_owned());
                left -= 1;
                if left == 0 {
                    break;
                }
            }
        }
        if left == 0 {
            break;
        }
    }
    tags.into_iter()
        .enumerate()
        .map(|(s, t)| t.unwrap_or_else(|| format!("slot{s}")))
        .collect()
}

/// The checkpoint key of slot `slot` for lane `id` (`node:lane`): the tag comes before
/// anything the operator named, so it is the key's hashtag.
pub fn slot_key(id: &str, slot: u16) -> Bytes {
    let tag = slot_tags()
        .get(usize::from(slot))
        .map(String::as_str)
        .unwrap_or("");
    Bytes::from(format!("georelay:checkpoint:{{{tag}}}:{id}"))
}

/// A redirection in an error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// The slot lives on `addr` now: refresh the map.
    Moved { slot: u16, addr: String },
    /// Ask `addr` for this one transaction (the slot is migrating there).
    Ask { slot: u16, addr: String },
}

/// Reads `MOVED 3999 127.0.0.1:7001` / `ASK 3999 127.0.0.1:7001`.
pub fn parse_redirect(msg: &str) -> Option<Redirect> {
    let mut it = msg.split(' ');
    let kind = it.next()?;
    let slot: u16 = it.next()?.parse().ok().filter(|s| *s < SLOTS)?;
    let addr = it.next()?.to_string();
    if addr.is_empty() || it.next().is_some() {
        return None;
    }
    match kind {
        "MOVED" => Some(Redirect::Moved { slot, addr }),
        "ASK" => Some(Redirect::Ask { slot, addr }),
        _ => None,
    }
}

/// The target's slot → master address map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetMap {
    pub owner: Vec<Option<String>>,
}

impl TargetMap {
    /// The masters' slots as a topology reply gives them (`tls`: their TLS ports).
    pub fn from_topology(t: &Topology, tls: bool) -> TargetMap {
        let mut owner = vec![None; usize::from(SLOTS)];
        for shard in &t.shards {
            let Some(m) = shard.master() else { continue };
            let addr = m.addr(tls);
            for r in &shard.slots {
                for s in r.first..=r.last.min(SLOTS - 1) {
                    owner[usize::from(s)] = Some(addr.clone());
                }
            }
        }
        TargetMap { owner }
    }

    pub fn owner(&self, slot: u16) -> Option<&str> {
        self.owner.get(usize::from(slot))?.as_deref()
    }

    /// Every master that owns a slot, once each.
    pub fn masters(&self) -> Vec<String> {
        let mut m: Vec<String> = self.owner.iter().flatten().cloned().collect();
        m.sort();
        m.dedup();
        m
    }

    pub fn uncovered(&self) -> usize {
        self.owner.iter().filter(|o| o.is_none()).count()
    }
}

/// One step of a planned batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Per slot, its commands (with their origin end offsets); each slot's transaction sets
    /// its checkpoint to `end`.
    Slots {
        groups: BTreeMap<u16, Vec<(Vec<Bytes>, u64)>>,
        end: u64,
    },
    /// A barrier, at origin offset `end`.
    Keyless {
        kind: Keyless,
        cmd: Vec<Bytes>,
        end: u64,
    },
}

/// Why a batch cannot go to a cluster target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub offset: u64,
    pub message: String,
}

/// Cuts a stream batch ending at `batch_end` into steps. `applied(slot)` is the slot's
/// checkpoint; `floor` the lane floor (a keyless command at or below it is applied).
pub fn plan(
    ops: &[Op],
    batch_end: u64,
    applied: impl Fn(u16) -> u64,
    floor: u64,
) -> Result<Vec<Step>, PlanError> {
    let mut steps = Vec::new();
    let mut groups: BTreeMap<u16, Vec<(Vec<Bytes>, u64)>> = BTreeMap::new();
    let mut last_end = None;
    for op in ops {
        let Op::Cmd { args, end } = op else { continue };
        let end = *end;
        match route(args).map_err(|message| PlanError {
            offset: end,
            message,
        })? {
            Routed::Slots(parts) => {
                for (slot, cmd) in parts {
                    if end > applied(slot) {
                        groups.entry(slot).or_default().push((cmd, end));
                    }
                }
                last_end = Some(end);
            }
            Routed::Keyless(kind, cmd) => {
                if let Some(e) = last_end.take() {
                    steps.push(Step::Slots {
                        groups: std::mem::take(&mut groups),
                        end: e,
                    });
                }
                if end > floor {
                    steps.push(Step::Keyless { kind, cmd, end });
                }
            }
        }
    }
    steps.push(Step::Slots {
        groups,
        end: batch_end,
    });
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::topology::{Node, Shard};
    use crate::cluster::SlotRange;

    fn cmd(parts: &[&str], end: u64) -> Op {
        Op::Cmd {
            args: parts
                .iter()
                .map(|p| Bytes::copy_from_slice(p.as_bytes()))
                .collect(),
            end,
        }
    }

    #[test]
    fn every_slot_has_a_short_tag_that_hashes_to_it() {
        let tags = slot_tags();
        assert_eq!(tags.len(), usize::from(SLOTS));
        for (s, t) in tags.iter().enumerate() {
            assert!(
                t.len() <= 3 && t.bytes().all(|b| b.is_ascii_alphanumeric()),
                "{t}"
            );
            assert_eq!(usize::from(key_slot(t.as_bytes())), s);
            let key = slot_key("eu:main", s as u16);
            assert_eq!(usize::from(key_slot(&key)), s);
        }
        assert!(slot_key("n:{x}", 7).starts_with(b"georelay:checkpoint:{"));
        assert_eq!(key_slot(&slot_key("n:{x}", 7)), 7);
    }

    #[test]
    fn redirections_parse_and_junk_does_not() {
        assert_eq!(
            parse_redirect("MOVED 3999 127.0.0.1:7001"),
            Some(Redirect::Moved {
                slot: 3999,
                addr: "127.0.0.1:7001".into()
            })
        );
        assert_eq!(
            parse_redirect("ASK 1 [::1]:7002"),
            Some(Redirect::Ask {
                slot: 1,
                addr: "[::1]:7002".into()
            })
        );
        for bad in [
            "MOVED",
            "MOVED 99999 a:1",
            "ASK x a:1",
            "MOVED 1",
            "ERR 1 a:1",
            "MOVED 1 a:1 b",
        ] {
            assert_eq!(parse_redirect(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_map_follows_healthy_masters() {
        let node = |port, master, healthy| Node {
            id: format!("n{port}"),
            ip: "127.0.0.1".into(),
            port,
            tls_port: None,
            master,
            healthy,
            syncing: false,
        };
        let t = Topology {
            shards: vec![
                Shard {
                    id: None,
                    slots: vec![SlotRange::new(0, 8191)],
                    nodes: vec![node(1, true, true), node(2, false, true)],
                },
                Shard {
                    id: None,
                    slots: vec![SlotRange::new(8192, 16000)],
                    nodes: vec![node(3, true, false)],
                },
            ],
        };
        let m = TargetMap::from_topology(&t, false);
        assert_eq!(m.owner(5), Some("127.0.0.1:1"));
        assert_eq!(m.owner(9000), None);
        assert_eq!(m.masters(), vec!["127.0.0.1:1".to_string()]);
        assert_eq!(m.uncovered(), 16384 - 8192);
    }

    #[test]
    fn plan_groups_by_slot_skips_what_is_applied_and_cuts_at_barriers() {
        let (a, b) = (key_slot(b"a"), key_slot(b"b"));
        let ops = vec![
            cmd(&["INCR", "a"], 10),
            cmd(&["DEL", "a", "b"], 20),
            cmd(&["FLUSHALL"], 30),
            Op::Select(0),
            cmd(&["INCR", "b"], 40),
        ];
        // Slot a is applied up to 10: its INCR is skipped, its part of the DEL is not.
        let applied = |s: u16| if s == a { 10 } else { 0 };
        let steps = plan(&ops, 45, applied, 0).unwrap();
        assert_eq!(steps.len(), 3);
        let Step::Slots { groups, end } = &steps[0] else {
            panic!()
        };
        assert_eq!(*end, 20);
        assert_eq!(groups[&a].len(), 1);
        assert_eq!(groups[&a][0].0[0], "DEL");
        assert_eq!(
            groups[&b][0],
            (vec![Bytes::from("DEL"), Bytes::from("b")], 20)
        );
        assert!(matches!(
            &steps[1],
            Step::Keyless {
                end: 30,
                kind: Keyless::AllMasters,
                ..
            }
        ));
        let Step::Slots { groups, end } = &steps[2] else {
            panic!()
        };
        assert_eq!((*end, groups[&b].len(), groups.len()), (45, 1, 1));
        // A floor past the barrier: the barrier is not replayed.
        let steps = plan(&ops, 45, |_| 0, 30).unwrap();
        assert!(!steps.iter().any(|s| matches!(s, Step::Keyless { .. })));
        // Everything applied: one empty step that still moves the floor.
        let steps = plan(&ops[..2], 20, |_| 20, 20).unwrap();
        assert_eq!(
            steps,
            vec![Step::Slots {
                groups: BTreeMap::new(),
                end: 20
            }]
        );
        let e = plan(&[cmd(&["RENAME", "a", "b"], 7)], 7, |_| 0, 0).unwrap_err();
        assert_eq!(e.offset, 7);
        assert!(e.message.contains("RENAME"), "{}", e.message);
    }
}
