//! A snapshot key as target commands (pure): `RESTORE … ABSTTL REPLACE` when the target
//! loads the source's DUMP version, else plain commands that rebuild it from nothing (`DEL`
//! first, so a replay after a crash gives the same key), with `PEXPIREAT`/`HPEXPIREAT` TTLs.

use bytes::Bytes;

use crate::rdb::objects::{dump_payload, Entry, Stream, Value};

/// Elements per variadic command when rebuilding a big collection.
const CHUNK: usize = 256;

/// What the target can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetCaps {
    /// `Some(v)`: `RESTORE` payloads stamped with RDB version `v` load.
    pub restore_version: Option<u16>,
    /// Redis ≥ 7.0 (XSETID ENTRIESADDED/MAXDELETEDID, XGROUP … ENTRIESREAD).
    pub stream_v2: bool,
}

fn b(s: impl Into<Vec<u8>>) -> Bytes {
    Bytes::from(s.into())
}

fn cmd(parts: &[&[u8]]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

/// The commands that put `entry` into the target (in the target database already selected).
pub fn key_commands(entry: &Entry, caps: TargetCaps) -> Vec<Vec<Bytes>> {
    if let Some(v) = caps.restore_version {
        let ttl = entry.expire_ms.unwrap_or(0).max(0).to_string();
        let payload = dump_payload(entry, v);
        let mut c = cmd(&[b"RESTORE", &entry.key, ttl.as_bytes()]);
        c.push(Bytes::from(payload));
        if entry.expire_ms.is_some() {
            c.push(b("ABSTTL"));
        }
        c.push(b("REPLACE"));
        return vec![c];
    }
    let key = Bytes::copy_from_slice(&entry.key);
    let mut out = vec![vec![b("DEL"), key.clone()]];
    let variadic = |out: &mut Vec<Vec<Bytes>>, name: &str, items: Vec<Bytes>, per: usize| {
        for part in items.chunks(CHUNK * per) {
            let mut c = vec![b(name), key.clone()];
            c.extend(part.iter().cloned());
            out.push(c);
        }
    };
    match &entry.value {
        Value::String(v) => out.push(vec![b("SET"), key.clone(), Bytes::copy_from_slice(v)]),
        Value::List(items) => variadic(
            &mut out,
            "RPUSH",
            items.iter().map(|i| Bytes::copy_from_slice(i)).collect(),
            1,
        ),
        Value::Set(items) => variadic(
            &mut out,
            "SADD",
            items.iter().map(|i| Bytes::copy_from_slice(i)).collect(),
            1,
        ),
        Value::ZSet(items) => {
            let flat = items
                .iter()
                .flat_map(|(m, s)| [b(score(*s)), Bytes::copy_from_slice(m)])
                .collect();
            variadic(&mut out, "ZADD", flat, 2)
        }
        Value::Hash(fields) => {
            let flat = fields
                .iter()
                .flat_map(|f| {
                    [
                        Bytes::copy_from_slice(&f.field),
                        Bytes::copy_from_slice(&f.value),
                    ]
                })
                .collect();
            variadic(&mut out, "HSET", flat, 2);
            for f in fields {
                if let Some(ms) = f.expire_ms {
                    out.push(vec![
                        b("HPEXPIREAT"),
                        key.clone(),
                        b(ms.to_string()),
                        b("FIELDS"),
                        b("1"),
                        Bytes::copy_from_slice(&f.field),
                    ]);
                }
            }
        }
        Value::Stream(s) => stream_commands(&key, s, caps, &mut out),
    }
    if let Some(ms) = entry.expire_ms {
        out.push(vec![b("PEXPIREAT"), key, b(ms.to_string())]);
    }
    out
}

/// A score as Redis parses it back exactly (shortest round-trip form; `inf`/`-inf`).
fn score(s: f64) -> String {
    if s.is_infinite() {
        return if s > 0.0 { "inf".into() } else { "-inf".into() };
    }
    format!("{s:?}")
}

fn stream_commands(key: &Bytes, s: &Stream, caps: TargetCaps, out: &mut Vec<Vec<Bytes>>) {
    for e in &s.entries {
        let mut c = vec![b("XADD"), key.clone(), b(e.id.to_string())];
        for (f, v) in &e.fields {
            c.push(Bytes::copy_from_slice(f));
            c.push(Bytes::copy_from_slice(v));
        }
        out.push(c);
    }
    if s.entries.is_empty() {
        // An empty stream still exists (with its last ID): add one entry and trim it away.
        out.push(vec![
            b("XADD"),
            key.clone(),
            b("MAXLEN"),
            b("0"),
            b(s.last_id.to_string()),
            b("f"),
            b("v"),
        ]);
    }
    let mut setid = vec![b("XSETID"), key.clone(), b(s.last_id.to_string())];
    if caps.stream_v2 {
        if let Some(n) = s.entries_added {
            setid.extend([b("ENTRIESADDED"), b(n.to_string())]);
        }
        if let Some(id) = s.max_deleted_id {
            setid.extend([b("MAXDELETEDID"), b(id.to_string())]);
        }
    }
    out.push(setid);
    for g in &s.groups {
        let mut c = vec![
            b("XGROUP"),
            b("CREATE"),
            key.clone(),
            Bytes::copy_from_slice(&g.name),
            b(g.last_id.to_string()),
        ];
        if let (true, Some(n)) = (caps.stream_v2, g.entries_read) {
            c.extend([b("ENTRIESREAD"), b(n.to_string())]);
        }
        out.push(c);
        for consumer in &g.consumers {
            let name = Bytes::copy_from_slice(&consumer.name);
            out.push(vec![
                b("XGROUP"),
                b("CREATECONSUMER"),
                key.clone(),
                Bytes::copy_from_slice(&g.name),
                name.clone(),
            ]);
            for id in &consumer.pending {
                let Some(p) = g.pending.iter().find(|p| p.id == *id) else {
                    continue;
                };
                out.push(vec![
                    b("XCLAIM"),
                    key.clone(),
                    Bytes::copy_from_slice(&g.name),
                    name.clone(),
                    b("0"),
                    b(id.to_string()),
                    b("TIME"),
                    b(p.delivery_time_ms.to_string()),
                    b("RETRYCOUNT"),
                    b(p.delivery_count.to_string()),
                    b("FORCE"),
                    b("JUSTID"),
                ]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::objects::{
        Consumer, ConsumerGroup, HashField, PendingEntry, StreamEntry, StreamId,
    };

    fn entry(value: Value, expire_ms: Option<i64>) -> Entry {
        Entry {
            db: 0,
            key: b"k".to_vec(),
            expire_ms,
            rdb_type: 0,
            value,
            raw: b"\x03abc".to_vec(),
        }
    }

    fn text(cmds: &[Vec<Bytes>]) -> Vec<String> {
        cmds.iter()
            .map(|c| {
                c.iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    const PLAIN: TargetCaps = TargetCaps {
        restore_version: None,
        stream_v2: true,
    };

    #[test]
    fn restore_carries_an_absolute_ttl_and_replace() {
        let caps = TargetCaps {
            restore_version: Some(10),
            stream_v2: true,
        };
        let c = key_commands(&entry(Value::String(b"abc".to_vec()), Some(1234)), caps);
        assert_eq!(c.len(), 1);
        assert_eq!(&c[0][..3], &[b("RESTORE"), b("k"), b("1234")]);
        assert_eq!(&c[0][4..], &[b("ABSTTL"), b("REPLACE")]);
        let p = &c[0][3];
        assert_eq!(p[0], 0);
        assert_eq!(&p[p.len() - 10..p.len() - 8], &10u16.to_le_bytes());
        let no_ttl = key_commands(&entry(Value::String(b"abc".to_vec()), None), caps);
        assert_eq!(&no_ttl[0][2], &b("0"));
        assert_eq!(&no_ttl[0][4..], &[b("REPLACE")]);
    }

    #[test]
    fn plain_commands_rebuild_from_nothing() {
        let c = key_commands(
            &entry(
                Value::ZSet(vec![
                    (b"a".to_vec(), 1.5),
                    (b"b".to_vec(), f64::NEG_INFINITY),
                    (b"c".to_vec(), 0.1),
                ]),
                Some(99),
            ),
            PLAIN,
        );
        assert_eq!(
            text(&c),
            ["DEL k", "ZADD k 1.5 a -inf b 0.1 c", "PEXPIREAT k 99"]
        );
        let many: Vec<Vec<u8>> = (0..600).map(|i| i.to_string().into_bytes()).collect();
        let c = key_commands(&entry(Value::List(many), None), PLAIN);
        assert_eq!(c.len(), 4);
        assert_eq!(c[1].len(), 2 + CHUNK);
        let h = Value::Hash(vec![
            HashField {
                field: b"f".to_vec(),
                value: b"v".to_vec(),
                expire_ms: Some(5000),
            },
            HashField {
                field: b"g".to_vec(),
                value: b"w".to_vec(),
                expire_ms: None,
            },
        ]);
        assert_eq!(
            text(&key_commands(&entry(h, None), PLAIN)),
            ["DEL k", "HSET k f v g w", "HPEXPIREAT k 5000 FIELDS 1 f"]
        );
    }

    #[test]
    fn streams_keep_ids_groups_and_pending_entries() {
        let id = |ms| StreamId { ms, seq: 0 };
        let s = Stream {
            entries: vec![StreamEntry {
                id: id(1),
                fields: vec![(b"a".to_vec(), b"1".to_vec())],
            }],
            length: 1,
            last_id: id(5),
            first_id: Some(id(1)),
            max_deleted_id: Some(id(4)),
            entries_added: Some(3),
            groups: vec![ConsumerGroup {
                name: b"g".to_vec(),
                last_id: id(1),
                entries_read: Some(1),
                pending: vec![PendingEntry {
                    id: id(1),
                    delivery_time_ms: 77,
                    delivery_count: 2,
                }],
                consumers: vec![Consumer {
                    name: b"c".to_vec(),
                    seen_time_ms: 0,
                    active_time_ms: None,
                    pending: vec![id(1)],
                }],
            }],
        };
        let c = key_commands(&entry(Value::Stream(Box::new(s.clone())), None), PLAIN);
        assert_eq!(
            text(&c),
            [
                "DEL k",
                "XADD k 1-0 a 1",
                "XSETID k 5-0 ENTRIESADDED 3 MAXDELETEDID 4-0",
                "XGROUP CREATE k g 1-0 ENTRIESREAD 1",
                "XGROUP CREATECONSUMER k g c",
                "XCLAIM k g c 0 1-0 TIME 77 RETRYCOUNT 2 FORCE JUSTID",
            ]
        );
        let old = TargetCaps {
            restore_version: None,
            stream_v2: false,
        };
        let c = text(&key_commands(&entry(Value::Stream(Box::new(s)), None), old));
        assert_eq!(c[2], "XSETID k 5-0");
        assert_eq!(c[3], "XGROUP CREATE k g 1-0");
        let empty = Stream {
            last_id: id(9),
            ..Default::default()
        };
        let c = text(&key_commands(
            &entry(Value::Stream(Box::new(empty)), None),
            old,
        ));
        assert_eq!(c[1], "XADD k MAXLEN 0 9-0 f v");
    }
}
