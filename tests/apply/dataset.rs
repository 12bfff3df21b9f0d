//! The apply tests' dataset: writes every RDB encoding into a real server, and reads a
//! server's keyspace (or decoded RDB entries) into one canonical form to compare key by key.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use georelay::rdb::objects::{Entry, Value};
use georelay::resp::Frame;

use crate::support::{Client, ServerKind};

/// One key, canonical: type, value lines (unordered types sorted), expiry, field expiries.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyState {
    pub kind: String,
    pub lines: Vec<Vec<u8>>,
    pub expire_ms: Option<i64>,
    pub field_expire_ms: Vec<(Vec<u8>, i64)>,
}

pub type Keyspace = BTreeMap<(u32, Vec<u8>), KeyState>;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("the clock is after 1970")
}

fn run(c: &mut Client, args: &[&str]) -> Frame {
    let f = c.cmd(args);
    if let Frame::Error(e) = &f {
        panic!("{args:?}: {e}");
    }
    f
}

/// Writes the mixed dataset: every string, list, set, sorted set, hash and stream encoding
/// the server has, TTL keys, a consumer group with pending entries, a function library
/// (7.0+), hash-field TTLs (Valkey 9), and keys in database 2.
pub fn populate(c: &mut Client, kind: ServerKind, tag: &str) {
    let k = |name: &str| format!("{tag}:{name}");
    let long: String = "abcdefghij".repeat(30);
    run(c, &["SET", &k("s:raw"), "hello\r\nworld"]);
    run(c, &["SET", &k("s:int"), "12345"]);
    run(c, &["SET", &k("s:neg"), "-7"]);
    run(c, &["SET", &k("s:i64"), "9223372036854775807"]);
    run(c, &["SET", &k("s:lzf"), &long]);
    run(c, &["SET", &k("s:ttl"), "soon", "PX", "600000"]);
    run(
        c,
        &["RPUSH", &k("l:small"), "a", "b", "1", "-3", "70000", &long],
    );
    let many: Vec<String> = (0..600).map(|i| format!("item-{i}")).collect();
    let mut cmd = vec!["RPUSH".to_string(), k("l:big")];
    cmd.extend(many.iter().cloned());
    run(c, &cmd.iter().map(String::as_str).collect::<Vec<_>>());
    run(
        c,
        &["SADD", &k("st:int"), "1", "2", "-3", "100000", "5000000000"],
    );
    run(c, &["SADD", &k("st:small"), "a", "b", "c"]);
    let mut cmd = vec!["SADD".to_string(), k("st:big")];
    cmd.extend(many.iter().cloned());
    run(c, &cmd.iter().map(String::as_str).collect::<Vec<_>>());
    run(
        c,
        &[
            "ZADD",
            &k("z:small"),
            "1",
            "a",
            "2.5",
            "b",
            "-inf",
            "c",
            "1e100",
            "d",
        ],
    );
    let mut cmd = vec!["ZADD".to_string(), k("z:big")];
    for (i, m) in many.iter().enumerate() {
        cmd.push(format!("{}.25", i as i64 - 300));
        cmd.push(m.clone());
    }
    run(c, &cmd.iter().map(String::as_str).collect::<Vec<_>>());
    run(
        c,
        &["HSET", &k("h:small"), "f", "v", "n", "1", "neg", "-20000"],
    );
    run(c, &["HSET", &k("h:longval"), "f", &long]);
    let mut cmd = vec!["HSET".to_string(), k("h:big")];
    for m in &many {
        cmd.push(m.clone());
        cmd.push(format!("v-{m}"));
    }
    run(c, &cmd.iter().map(String::as_str).collect::<Vec<_>>());
    run(c, &["HSET", &k("h:ttlkey"), "a", "1"]);
    run(
        c,
        &[
            "PEXPIREAT",
            &k("h:ttlkey"),
            &(now_ms() + 3_600_000).to_string(),
        ],
    );
    let x = k("x:stream");
    for i in 0..30 {
        run(
            c,
            &[
                "XADD",
                &x,
                &format!("1-{}", i + 1),
                "a",
                &i.to_string(),
                "b",
                "x",
            ],
        );
    }
    run(c, &["XADD", &x, "2-1", "other", "field"]);
    run(c, &["XDEL", &x, "1-5"]);
    run(c, &["XGROUP", "CREATE", &x, "g1", "0"]);
    run(c, &["XGROUP", "CREATE", &x, "g2", "$"]);
    run(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g1",
            "alice",
            "COUNT",
            "3",
            "STREAMS",
            &x,
            ">",
        ],
    );
    run(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g1",
            "bob",
            "COUNT",
            "2",
            "STREAMS",
            &x,
            ">",
        ],
    );
    run(c, &["XACK", &x, "g1", "1-1"]);
    run(c, &["XGROUP", "CREATECONSUMER", &x, "g1", "carol"]);
    if kind != ServerKind::Redis62 {
        let code = format!(
            "#!lua name={}lib\nredis.register_function('{}fn', function(keys, args) return 1 end)",
            tag.replace(|ch: char| !ch.is_ascii_alphanumeric(), ""),
            tag.replace(|ch: char| !ch.is_ascii_alphanumeric(), "")
        );
        run(c, &["FUNCTION", "LOAD", "REPLACE", &code]);
    }
    if kind == ServerKind::Valkey91 {
        run(
            c,
            &["HSET", &k("h:fttl"), "keep", "1", "go", "2", "also", "3"],
        );
        let at = (now_ms() + 7_200_000).to_string();
        run(
            c,
            &["HPEXPIREAT", &k("h:fttl"), &at, "FIELDS", "2", "go", "also"],
        );
    }
    run(c, &["SELECT", "2"]);
    run(c, &["SET", &k("db2:s"), "in db 2"]);
    run(c, &["RPUSH", &k("db2:l"), "x", "y"]);
    run(c, &["SELECT", "0"]);
}

fn bulk(f: &Frame) -> Vec<u8> {
    match f {
        Frame::Bulk(b) => b.to_vec(),
        Frame::Simple(s) => s.as_bytes().to_vec(),
        Frame::Integer(i) => i.to_string().into_bytes(),
        other => panic!("expected a bulk string, got {other:?}"),
    }
}

fn items(f: Frame) -> Vec<Frame> {
    match f {
        Frame::Array(a) => a,
        Frame::Null | Frame::NullArray => Vec::new(),
        other => panic!("expected an array, got {other:?}"),
    }
}

fn bulks(f: Frame) -> Vec<Vec<u8>> {
    items(f).iter().map(bulk).collect()
}

/// A flat `[k1, v1, k2, v2…]` reply (XINFO) as a map of text keys.
fn map(f: Frame) -> BTreeMap<String, Frame> {
    let a = items(f);
    a.chunks(2)
        .map(|p| {
            (
                String::from_utf8_lossy(&bulk(&p[0])).into_owned(),
                p[1].clone(),
            )
        })
        .collect()
}

fn score(s: &[u8]) -> Vec<u8> {
    let v: f64 = std::str::from_utf8(s).unwrap().parse().unwrap();
    format!("{v:e}").into_bytes()
}

fn cmdb(c: &mut Client, args: &[&[u8]]) -> Frame {
    c.send_raw(&georelay::resp::command(args)).unwrap();
    c.read_frame().unwrap()
}

/// Reads every key of databases `dbs` from a live server.
pub fn read_server(c: &mut Client, dbs: &[u32], field_ttls: bool) -> Keyspace {
    let mut out = Keyspace::new();
    for &db in dbs {
        run(c, &["SELECT", &db.to_string()]);
        let keys = bulks(run(c, &["KEYS", "*"]));
        for key in keys {
            let kind = String::from_utf8_lossy(&bulk(&cmdb(c, &[b"TYPE", &key]))).into_owned();
            let mut field_expire_ms = Vec::new();
            let lines = match kind.as_str() {
                "string" => vec![bulk(&cmdb(c, &[b"GET", &key]))],
                "list" => bulks(cmdb(c, &[b"LRANGE", &key, b"0", b"-1"])),
                "set" => {
                    let mut m = bulks(cmdb(c, &[b"SMEMBERS", &key]));
                    m.sort();
                    m
                }
                "zset" => {
                    let flat = bulks(cmdb(c, &[b"ZRANGE", &key, b"0", b"-1", b"WITHSCORES"]));
                    let mut pairs: Vec<Vec<u8>> = flat
                        .chunks(2)
                        .map(|p| [p[0].clone(), b"=".to_vec(), score(&p[1])].concat())
                        .collect();
                    pairs.sort();
                    pairs
                }
                "hash" => {
                    let flat = bulks(cmdb(c, &[b"HGETALL", &key]));
                    let mut pairs: Vec<Vec<u8>> = flat
                        .chunks(2)
                        .map(|p| [p[0].clone(), b"=".to_vec(), p[1].clone()].concat())
                        .collect();
                    pairs.sort();
                    if field_ttls {
                        for p in flat.chunks(2) {
                            let r =
                                items(cmdb(c, &[b"HPEXPIRETIME", &key, b"FIELDS", b"1", &p[0]]));
                            match r.first() {
                                Some(Frame::Integer(t)) if *t > 0 => {
                                    field_expire_ms.push((p[0].clone(), *t))
                                }
                                Some(Frame::Integer(_)) => {}
                                other => panic!("HPEXPIRETIME of a field: {other:?}"),
                            }
                        }
                        field_expire_ms.sort();
                    }
                    pairs
                }
                "stream" => stream_lines(c, &key),
                other => panic!("unexpected type {other}"),
            };
            let pttl = match cmdb(c, &[b"PTTL", &key]) {
                Frame::Integer(t) => t,
                other => panic!("PTTL: {other:?}"),
            };
            let expire_ms = (pttl >= 0).then(|| now_ms() + pttl);
            out.insert(
                (db, key),
                KeyState {
                    kind,
                    lines,
                    expire_ms,
                    field_expire_ms,
                },
            );
        }
    }
    run(c, &["SELECT", "0"]);
    out
}

fn stream_lines(c: &mut Client, key: &[u8]) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    for e in items(cmdb(c, &[b"XRANGE", key, b"-", b"+"])) {
        let e = items(e);
        let mut line = bulk(&e[0]);
        for f in bulks(e[1].clone()) {
            line.push(b' ');
            line.extend(f);
        }
        lines.push(line);
    }
    let info = map(cmdb(c, &[b"XINFO", b"STREAM", key]));
    lines.push(format!("length {}", String::from_utf8_lossy(&bulk(&info["length"]))).into_bytes());
    lines.push(
        format!(
            "last {}",
            String::from_utf8_lossy(&bulk(&info["last-generated-id"]))
        )
        .into_bytes(),
    );
    for g in items(cmdb(c, &[b"XINFO", b"GROUPS", key])) {
        let g = map(g);
        let name = bulk(&g["name"]);
        lines.push(
            [
                b"group ".to_vec(),
                name.clone(),
                format!(
                    " last {}",
                    String::from_utf8_lossy(&bulk(&g["last-delivered-id"]))
                )
                .into_bytes(),
            ]
            .concat(),
        );
        for p in items(cmdb(c, &[b"XPENDING", key, &name, b"-", b"+", b"100000"])) {
            let p = items(p);
            lines.push(
                [
                    b"pel ".to_vec(),
                    name.clone(),
                    b" ".to_vec(),
                    bulk(&p[0]),
                    b" ".to_vec(),
                    bulk(&p[1]),
                    b" ".to_vec(),
                    bulk(&p[3]),
                ]
                .concat(),
            );
        }
        for cons in items(cmdb(c, &[b"XINFO", b"CONSUMERS", key, &name])) {
            let cons = map(cons);
            lines.push(
                [
                    b"consumer ".to_vec(),
                    name.clone(),
                    b" ".to_vec(),
                    bulk(&cons["name"]),
                ]
                .concat(),
            );
        }
    }
    lines
}

/// The same canonical form, from decoded RDB entries.
pub fn from_entries(entries: &[Entry]) -> Keyspace {
    let mut out = Keyspace::new();
    for e in entries {
        let mut field_expire_ms = Vec::new();
        let lines = match &e.value {
            Value::String(s) => vec![s.clone()],
            Value::List(l) => l.clone(),
            Value::Set(s) => {
                let mut s = s.clone();
                s.sort();
                s
            }
            Value::ZSet(z) => {
                let mut v: Vec<Vec<u8>> = z
                    .iter()
                    .map(|(m, s)| {
                        [m.clone(), b"=".to_vec(), format!("{s:e}").into_bytes()].concat()
                    })
                    .collect();
                v.sort();
                v
            }
            Value::Hash(h) => {
                let mut v: Vec<Vec<u8>> = h
                    .iter()
                    .map(|f| [f.field.clone(), b"=".to_vec(), f.value.clone()].concat())
                    .collect();
                v.sort();
                field_expire_ms = h
                    .iter()
                    .filter_map(|f| Some((f.field.clone(), f.expire_ms?)))
                    .collect();
                field_expire_ms.sort();
                v
            }
            Value::Stream(s) => {
                let mut lines = Vec::new();
                for en in &s.entries {
                    let mut line = en.id.to_string().into_bytes();
                    for (f, v) in &en.fields {
                        line.push(b' ');
                        line.extend(f);
                        line.push(b' ');
                        line.extend(v);
                    }
                    lines.push(line);
                }
                lines.push(format!("length {}", s.length).into_bytes());
                lines.push(format!("last {}", s.last_id).into_bytes());
                for g in &s.groups {
                    lines.push(
                        [
                            b"group ".to_vec(),
                            g.name.clone(),
                            format!(" last {}", g.last_id).into_bytes(),
                        ]
                        .concat(),
                    );
                    for p in &g.pending {
                        let owner = g
                            .consumers
                            .iter()
                            .find(|c| c.pending.contains(&p.id))
                            .map(|c| c.name.clone())
                            .unwrap_or_else(|| {
                                panic!(
                                    "pending entry {} of group {:?} has no consumer",
                                    p.id, g.name
                                )
                            });
                        lines.push(
                            [
                                b"pel ".to_vec(),
                                g.name.clone(),
                                format!(" {} ", p.id).into_bytes(),
                                owner,
                                format!(" {}", p.delivery_count).into_bytes(),
                            ]
                            .concat(),
                        );
                    }
                    for cons in &g.consumers {
                        lines.push(
                            [
                                b"consumer ".to_vec(),
                                g.name.clone(),
                                b" ".to_vec(),
                                cons.name.clone(),
                            ]
                            .concat(),
                        );
                    }
                }
                lines
            }
        };
        out.insert(
            (e.db, e.key.clone()),
            KeyState {
                kind: e.value.type_name().to_string(),
                lines,
                expire_ms: e.expire_ms,
                field_expire_ms,
            },
        );
    }
    out
}

/// Asserts two keyspaces are equal key by key: type and value exactly, expiries within
/// `ttl_slack_ms`. Panics naming the first difference.
pub fn assert_same(want: &Keyspace, got: &Keyspace, ttl_slack_ms: i64) {
    let wk: Vec<_> = want.keys().collect();
    let gk: Vec<_> = got.keys().collect();
    if wk != gk {
        let missing: Vec<_> = want
            .keys()
            .filter(|k| !got.contains_key(*k))
            .take(5)
            .collect();
        let extra: Vec<_> = got
            .keys()
            .filter(|k| !want.contains_key(*k))
            .take(5)
            .collect();
        panic!(
            "key sets differ ({} vs {} keys); missing {missing:?}, extra {extra:?}",
            want.len(),
            got.len()
        );
    }
    for (k, w) in want {
        let g = &got[k];
        assert_eq!(w.kind, g.kind, "type of {k:?}");
        assert_eq!(w.lines, g.lines, "value of {k:?}");
        let close = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => (a - b).abs() <= ttl_slack_ms,
            _ => false,
        };
        assert!(
            close(w.expire_ms, g.expire_ms),
            "TTL of {k:?}: {:?} vs {:?}",
            w.expire_ms,
            g.expire_ms
        );
        assert_eq!(
            w.field_expire_ms.len(),
            g.field_expire_ms.len(),
            "field TTLs of {k:?}"
        );
        for (a, b) in w.field_expire_ms.iter().zip(&g.field_expire_ms) {
            assert!(
                a.0 == b.0 && (a.1 - b.1).abs() <= ttl_slack_ms,
                "field TTL of {k:?}: {a:?} vs {b:?}"
            );
        }
    }
}
