//! Where a stream command goes in a cluster target (pure): the keys of a replicated write
//! command, hence its slot; a multi-key command whose keys lie in several slots is split per
//! slot where that keeps its meaning (`DEL`, `UNLINK`, `TOUCH`, `MSET`), otherwise refused
//! with a message naming it; commands without keys are barriers applied on every master.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::cluster::key_slot;

/// Where a command without keys is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyless {
    /// On every master (`FLUSHALL`, `FLUSHDB`, `FUNCTION …`, `SCRIPT …`): each one holds a
    /// part of the keyspace or its own copy of the libraries.
    AllMasters,
    /// On one master (`PUBLISH`: the cluster bus spreads it).
    OneMaster,
}

/// A command routed to the target's slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// One command per slot, in the order the origin wrote them.
    Slots(Vec<(u16, Vec<Bytes>)>),
    /// No key: a barrier (every earlier command is applied before it, none after it until
    /// it is). Applying it twice gives the same target (`FUNCTION LOAD` gets `REPLACE`).
    Keyless(Keyless, Vec<Bytes>),
}

/// Key positions of a command.
enum Spec {
    /// Arguments `first..` by `step` (every one a key when `step` is 1; key-value pairs
    /// when 2); `split` when the command may be cut per slot.
    Range {
        first: usize,
        step: usize,
        split: bool,
    },
    /// Explicit positions (two-key commands, the key of a subcommand).
    At(&'static [usize]),
    /// `numkeys` at `count`, the keys after it, plus `extra` positions.
    Counted {
        count: usize,
        extra: &'static [usize],
    },
    None(Keyless),
}

fn spec(name: &[u8], args: &[Bytes]) -> Spec {
    let sub = args
        .get(1)
        .map(|a| a.to_ascii_uppercase())
        .unwrap_or_default();
    match name {
        b"DEL" | b"UNLINK" | b"TOUCH" => Spec::Range {
            first: 1,
            step: 1,
            split: true,
        },
        b"MSET" => Spec::Range {
            first: 1,
            step: 2,
            split: true,
        },
        b"MSETNX" => Spec::Range {
            first: 1,
            step: 2,
            split: false,
        },
        b"SUNIONSTORE" | b"SINTERSTORE" | b"SDIFFSTORE" | b"PFMERGE" => Spec::Range {
            first: 1,
            step: 1,
            split: false,
        },
        b"BITOP" => Spec::Range {
            first: 2,
            step: 1,
            split: false,
        },
        b"RENAME" | b"RENAMENX" | b"SMOVE" | b"LMOVE" | b"BLMOVE" | b"RPOPLPUSH"
        | b"BRPOPLPUSH" | b"COPY" | b"ZRANGESTORE" | b"GEOSEARCHSTORE" => Spec::At(&[1, 2]),
        b"ZUNIONSTORE" | b"ZINTERSTORE" | b"ZDIFFSTORE" => Spec::Counted {
            count: 2,
            extra: &[1],
        },
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            Spec::Counted {
                count: 2,
                extra: &[],
            }
        }
        b"LMPOP" | b"ZMPOP" | b"SINTERCARD" | b"ZINTERCARD" => Spec::Counted {
            count: 1,
            extra: &[],
        },
        b"BLMPOP" | b"BZMPOP" => Spec::Counted {
            count: 2,
            extra: &[],
        },
        b"XGROUP" | b"XINFO" | b"OBJECT" => Spec::At(&[2]),
        b"MEMORY" if sub.as_slice() == b"USAGE" => Spec::At(&[2]),
        b"FLUSHALL" | b"FLUSHDB" | b"FUNCTION" | b"SCRIPT" => Spec::None(Keyless::AllMasters),
        b"PUBLISH" => Spec::None(Keyless::OneMaster),
        _ => Spec::At(&[1]),
    }
}

fn upper(a: &[u8]) -> Vec<u8> {
    a.to_ascii_uppercase()
}

/// Routes one command; `Err` names a command a cluster target cannot take as it is.
pub fn route(args: &[Bytes]) -> Result<Routed, String> {
    let Some(first) = args.first() else {
        return Err("an empty command".into());
    };
    let name = upper(first);
    let shown = String::from_utf8_lossy(&name).into_owned();
    if name.as_slice() == b"SWAPDB" {
        return Err("SWAPDB: a cluster target has database 0 only".into());
    }
    let positions: Vec<usize> = match spec(&name, args) {
        Spec::None(kind) => {
            let mut cmd = args.to_vec();
            let load = args.get(1).map(|a| upper(a)).as_deref() == Some(b"LOAD".as_slice());
            let replace = args.iter().skip(2).any(|a| upper(a) == b"REPLACE");
            if name.as_slice() == b"FUNCTION" && load && !replace {
                cmd.insert(2, Bytes::from_static(b"REPLACE"));
            }
            return Ok(Routed::Keyless(kind, cmd));
        }
        Spec::Range { first, step, split } => {
            let pos: Vec<usize> = (first..args.len()).step_by(step).collect();
            if split {
                return Ok(split_range(args, &pos, step));
            }
            pos
        }
        Spec::At(at) => at.iter().copied().filter(|&i| i < args.len()).collect(),
        Spec::Counted { count, extra } => {
            let n = args
                .get(count)
                .and_then(|a| std::str::from_utf8(a).ok())
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| format!("{shown}: no key count"))?;
            let mut pos: Vec<usize> = extra.to_vec();
            pos.extend((count + 1..count + 1 + n).filter(|&i| i < args.len()));
            pos
        }
    };
    let mut slots = positions
        .iter()
        .filter_map(|&i| args.get(i))
        .map(|k| key_slot(k));
    let Some(slot) = slots.next() else {
        return Err(format!(
            "{shown} has no key, and a cluster target cannot route it"
        ));
    };
    let mut all: Vec<u16> = slots.filter(|&s| s != slot).collect();
    if all.is_empty() {
        return Ok(Routed::Slots(vec![(slot, args.to_vec())]));
    }
    all.insert(0, slot);
    all.dedup();
    Err(format!(
        "{shown} touches keys in slots {}, and a cluster target can apply it in one slot only",
        all.iter()
            .take(4)
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// `DEL k1 k2 …` / `MSET k1 v1 k2 v2 …` as one command per slot (slots in the order of their
/// first key).
fn split_range(args: &[Bytes], pos: &[usize], step: usize) -> Routed {
    let mut order: Vec<u16> = Vec::new();
    let mut by: BTreeMap<u16, Vec<Bytes>> = BTreeMap::new();
    for &i in pos {
        let slot = key_slot(&args[i]);
        let cmd = by.entry(slot).or_insert_with(|| {
            order.push(slot);
            vec![args[0].clone()]
        });
        cmd.extend(args[i..(i + step).min(args.len())].iter().cloned());
    }
    Routed::Slots(
        order
            .into_iter()
            .filter_map(|s| by.remove(&s).map(|c| (s, c)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(parts: &[&str]) -> Vec<Bytes> {
        parts
            .iter()
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect()
    }

    fn slot(k: &str) -> u16 {
        key_slot(k.as_bytes())
    }

    #[test]
    fn single_key_commands_go_to_their_slot() {
        for cmd in [
            c(&["SET", "a", "1"]),
            c(&["incrby", "a", "5"]),
            c(&["LPUSH", "a", "x", "y"]),
            c(&["PEXPIREAT", "a", "99"]),
        ] {
            assert_eq!(
                route(&cmd).unwrap(),
                Routed::Slots(vec![(slot("a"), cmd.clone())])
            );
        }
        let x = c(&["XGROUP", "CREATE", "s", "g", "$"]);
        assert_eq!(
            route(&x).unwrap(),
            Routed::Slots(vec![(slot("s"), x.clone())])
        );
        let same = c(&["RENAME", "{u}a", "{u}b"]);
        assert_eq!(
            route(&same).unwrap(),
            Routed::Slots(vec![(slot("u"), same.clone())])
        );
    }

    #[test]
    fn del_and_mset_are_split_per_slot_in_order() {
        assert_ne!(slot("a"), slot("b"));
        let Routed::Slots(parts) = route(&c(&["DEL", "a", "b", "{a}z"])).unwrap() else {
            panic!()
        };
        assert_eq!(
            parts,
            vec![
                (slot("a"), c(&["DEL", "a", "{a}z"])),
                (slot("b"), c(&["DEL", "b"]))
            ]
        );
        let Routed::Slots(parts) = route(&c(&["MSET", "b", "1", "a", "2", "b", "3"])).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            parts,
            vec![
                (slot("b"), c(&["MSET", "b", "1", "b", "3"])),
                (slot("a"), c(&["MSET", "a", "2"]))
            ]
        );
    }

    #[test]
    fn cross_slot_commands_that_cannot_be_split_are_named() {
        for (cmd, name) in [
            (c(&["RENAME", "a", "b"]), "RENAME"),
            (c(&["MSETNX", "a", "1", "b", "2"]), "MSETNX"),
            (c(&["SUNIONSTORE", "a", "b"]), "SUNIONSTORE"),
            (c(&["ZUNIONSTORE", "a", "2", "a", "b"]), "ZUNIONSTORE"),
            (c(&["EVAL", "return 1", "2", "a", "b"]), "EVAL"),
        ] {
            let e = route(&cmd).unwrap_err();
            assert!(e.starts_with(name) && e.contains("slots"), "{e}");
        }
        assert!(route(&c(&["SWAPDB", "0", "1"]))
            .unwrap_err()
            .contains("database 0"));
        assert!(route(&c(&["EVAL", "return 1", "0"]))
            .unwrap_err()
            .contains("no key"));
        assert!(route(&c(&["EVAL", "return 1", "x"])).is_err());
        assert!(route(&[]).is_err());
    }

    #[test]
    fn keyless_commands_are_barriers_and_function_load_replaces() {
        assert_eq!(
            route(&c(&["FLUSHALL"])).unwrap(),
            Routed::Keyless(Keyless::AllMasters, c(&["FLUSHALL"]))
        );
        assert_eq!(
            route(&c(&["FUNCTION", "LOAD", "code"])).unwrap(),
            Routed::Keyless(
                Keyless::AllMasters,
                c(&["FUNCTION", "LOAD", "REPLACE", "code"])
            )
        );
        assert_eq!(
            route(&c(&["FUNCTION", "LOAD", "REPLACE", "code"])).unwrap(),
            Routed::Keyless(
                Keyless::AllMasters,
                c(&["FUNCTION", "LOAD", "REPLACE", "code"])
            )
        );
        assert_eq!(
            route(&c(&["PUBLISH", "ch", "m"])).unwrap(),
            Routed::Keyless(Keyless::OneMaster, c(&["PUBLISH", "ch", "m"]))
        );
    }
}
