//! Unit tests of the object decoder on hand-built RDBs (real server RDBs are decoded in
//! `tests/apply_rdb.rs` and the fuzz corpus).

use super::*;
use crate::rdb::Crc64;

fn finish(mut v: Vec<u8>) -> Vec<u8> {
    v.push(0xff);
    let mut crc = Crc64::new();
    crc.update(&v);
    v.extend_from_slice(&crc.finish().to_le_bytes());
    v
}

fn s(b: &[u8]) -> Vec<u8> {
    assert!(b.len() < 64);
    let mut v = vec![b.len() as u8];
    v.extend_from_slice(b);
    v
}

fn decode_all(rdb: &[u8], chunk: usize) -> Result<Vec<Item>, ObjectError> {
    let mut d = RdbDecoder::new();
    let mut out = Vec::new();
    for part in rdb.chunks(chunk.max(1)) {
        d.feed(part);
        while let Some(item) = d.next_item()? {
            out.push(item);
        }
    }
    while let Some(item) = d.finish_item()? {
        out.push(item);
    }
    Ok(out)
}

fn keys(items: &[Item]) -> Vec<&Entry> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Key(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// An RDB 9 with AUX, SELECTDB, RESIZEDB, expiries, a function and several object types.
fn sample() -> Vec<u8> {
    let mut v = b"REDIS0009".to_vec();
    v.push(0xfa);
    v.extend(s(b"redis-ver"));
    v.extend(s(b"6.2.14"));
    v.extend([0xfe, 0x03, 0xfb, 0x04, 0x01]);
    // string with an int encoding, expiring at 1.7e12 ms.
    v.push(0xfc);
    v.extend(1_700_000_000_000i64.to_le_bytes());
    v.push(0);
    v.extend(s(b"n"));
    v.extend([0xc1, 0x39, 0x30]);
    // plain list, old-style expiry in seconds.
    v.push(0xfd);
    v.extend(1_800_000_000i32.to_le_bytes());
    v.push(1);
    v.extend(s(b"l"));
    v.push(2);
    v.extend(s(b"a"));
    v.extend(s(b"b"));
    // ZSET (text doubles) with +inf, ZSET_2 with a binary double.
    v.push(3);
    v.extend(s(b"z"));
    v.push(2);
    v.extend(s(b"m1"));
    v.extend(s(b"1.5"));
    v.extend(s(b"m2"));
    v.push(254);
    v.push(5);
    v.extend(s(b"z2"));
    v.push(1);
    v.extend(s(b"m"));
    v.extend((-2.25f64).to_le_bytes());
    // plain hash, LFU and LRU hints first.
    v.extend([0xf9, 0x05, 0xf8, 0x10]);
    v.push(4);
    v.extend(s(b"h"));
    v.push(1);
    v.extend(s(b"f"));
    v.extend(s(b"v"));
    v.push(0xf5);
    v.extend(s(b"#!lua name=lib"));
    finish(v)
}

#[test]
fn hand_built_rdb_decodes_at_any_chunking() {
    let rdb = sample();
    let whole = decode_all(&rdb, rdb.len()).unwrap();
    for chunk in [1, 2, 3, 7, 64] {
        assert_eq!(decode_all(&rdb, chunk).unwrap(), whole, "chunk {chunk}");
    }
    assert_eq!(
        whole[0],
        Item::Aux {
            key: b"redis-ver".to_vec(),
            value: b"6.2.14".to_vec()
        }
    );
    assert_eq!(
        whole.last(),
        Some(&Item::End {
            checksum_ok: Some(true)
        })
    );
    assert!(whole.contains(&Item::Function {
        code: b"#!lua name=lib".to_vec()
    }));
    let k = keys(&whole);
    assert_eq!(k.len(), 5);
    assert!(k.iter().all(|e| e.db == 3));
    assert_eq!(k[0].value, Value::String(b"12345".to_vec()));
    assert_eq!(k[0].expire_ms, Some(1_700_000_000_000));
    assert_eq!(k[1].value, Value::List(vec![b"a".to_vec(), b"b".to_vec()]));
    assert_eq!(k[1].expire_ms, Some(1_800_000_000_000));
    assert_eq!(
        k[2].value,
        Value::ZSet(vec![(b"m1".to_vec(), 1.5), (b"m2".to_vec(), f64::INFINITY)])
    );
    assert_eq!(k[2].expire_ms, None);
    assert_eq!(k[3].value, Value::ZSet(vec![(b"m".to_vec(), -2.25)]));
    assert_eq!(
        k[4].value,
        Value::Hash(vec![HashField {
            field: b"f".to_vec(),
            value: b"v".to_vec(),
            expire_ms: None
        }])
    );
    assert_eq!(k[4].raw, [1, 1, b'f', 1, b'v']);
}

#[test]
fn every_prefix_is_incomplete_or_truncated_never_a_panic() {
    let rdb = sample();
    for n in 0..rdb.len() {
        match decode_all(&rdb[..n], 5) {
            Err(ObjectError::Truncated { .. }) => {}
            other => panic!("prefix {n}: {other:?}"),
        }
    }
}

#[test]
fn checksum_mismatch_and_trailing_bytes() {
    let mut rdb = sample();
    let last = rdb.len() - 1;
    rdb[last] ^= 1;
    assert!(matches!(
        decode_all(&rdb, 10),
        Err(ObjectError::Checksum { .. })
    ));
    let mut rdb = sample();
    rdb.push(0);
    assert_eq!(decode_all(&rdb, 10), Err(ObjectError::TrailingBytes));
    // A zero checksum means "saved without a checksum".
    let mut rdb = sample();
    let n = rdb.len();
    rdb[n - 8..].fill(0);
    assert_eq!(
        decode_all(&rdb, 10).unwrap().last(),
        Some(&Item::End { checksum_ok: None })
    );
}

/// A module type id for name `name` and encoding version `ver` (the inverse of
/// `module_name`).
fn module_id(name: &str, ver: u64) -> u64 {
    const CSET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut id = 0u64;
    for ch in name.bytes() {
        id = id << 6 | CSET.iter().position(|&c| c == ch).unwrap() as u64;
    }
    id << 10 | ver
}

#[test]
fn module_key_is_refused_naming_key_and_module() {
    let id = module_id("ReJSON-RL", 3);
    assert_eq!(module_name(id), "ReJSON-RL");
    let mut v = b"REDIS0010".to_vec();
    v.extend([0xfe, 0x00, 0x07]);
    v.extend(s(b"user:42"));
    v.push(0x81);
    v.extend(id.to_be_bytes());
    v.extend([0x05, 0x02, b'{', b'}', 0x00]);
    let err = decode_all(&finish(v), 4).unwrap_err();
    assert_eq!(
        err,
        ObjectError::ModuleKey {
            key: "user:42".into(),
            module: "ReJSON-RL".into()
        }
    );
    let text = err.to_string();
    assert!(
        text.contains("user:42") && text.contains("ReJSON-RL"),
        "{text}"
    );
}

#[test]
fn module_aux_is_skipped_and_named() {
    let id = module_id("graphdata", 1);
    let mut v = b"REDIS0010".to_vec();
    v.push(0xf7);
    v.push(0x81);
    v.extend(id.to_be_bytes());
    v.extend([0x02, 0x02]); // when_opcode UINT, when = 2
    v.extend([0x01, 0x05, 0x04]);
    v.extend(1.0f64.to_le_bytes());
    v.extend([0x05, 0x01, b'x', 0x00]);
    v.extend([0x00, 0x01, b'k', 0x01, b'v']);
    let items = decode_all(&finish(v), 3).unwrap();
    assert_eq!(
        items[0],
        Item::ModuleAux {
            module: "graphdata".into()
        }
    );
    assert_eq!(keys(&items)[0].value, Value::String(b"v".to_vec()));
}

#[test]
fn valkey_hash2_field_ttls_and_slot_import() {
    let mut v = b"VALKEY080".to_vec();
    v.push(0xf3);
    v.extend(s(&[b'j'; 40]));
    v.extend([0x01, 0x00, 0x40, 0x10]); // one range 0..=16
    v.push(0xf4);
    v.extend([0x05, 0x01, 0x00]);
    v.push(22);
    v.extend(s(b"h"));
    v.push(2);
    v.extend(s(b"a"));
    v.extend(s(b"1"));
    v.extend((-1i64).to_le_bytes());
    v.extend(s(b"b"));
    v.extend(s(b"2"));
    v.extend(1_900_000_000_123i64.to_le_bytes());
    let items = decode_all(&finish(v), 6).unwrap();
    let field = |f: &[u8], val: &[u8], e| HashField {
        field: f.to_vec(),
        value: val.to_vec(),
        expire_ms: e,
    };
    assert_eq!(
        keys(&items)[0].value,
        Value::Hash(vec![
            field(b"a", b"1", None),
            field(b"b", b"2", Some(1_900_000_000_123))
        ])
    );
    // In a REDIS-magic RDB, 243 is no opcode.
    let mut v = b"REDIS0012".to_vec();
    v.push(0xf3);
    assert!(matches!(
        decode_all(&finish(v), 6),
        Err(ObjectError::Corrupt { .. })
    ));
}

#[test]
fn redis_hash_metadata_relative_ttls() {
    let mut v = b"REDIS0012".to_vec();
    v.push(24);
    v.extend(s(b"h"));
    v.extend(1_000i64.to_le_bytes()); // min expiry
    v.push(2);
    v.extend([0x00]);
    v.extend(s(b"a"));
    v.extend(s(b"1"));
    v.extend([0x0b]); // ttl 11 → 1000 + 11 - 1
    v.extend(s(b"b"));
    v.extend(s(b"2"));
    let items = decode_all(&finish(v), 6).unwrap();
    match &keys(&items)[0].value {
        Value::Hash(f) => {
            assert_eq!(f[0].expire_ms, None);
            assert_eq!(f[1].expire_ms, Some(1010));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn versions_and_bad_bytes() {
    for bad in [&b"REDIS0008"[..], b"REDIS0013", b"VALKEY079", b"VALKEY082"] {
        let v = finish(bad.to_vec());
        assert!(
            matches!(decode_all(&v, 4), Err(ObjectError::Version { .. })),
            "{bad:?}"
        );
    }
    assert!(matches!(
        decode_all(b"NOTANRDB!\xff", 4),
        Err(ObjectError::Header(_))
    ));
    let mut v = b"REDIS0011".to_vec();
    v.extend([0x00, 0x01, b'k', 0x82]);
    let err = decode_all(&finish(v), 4).unwrap_err();
    assert!(
        matches!(&err, ObjectError::InKey { key, offset: 13, .. } if key == "k"),
        "{err:?}"
    );
    // A huge declared length waits for bytes, then is reported as a cut RDB.
    let mut v = b"REDIS0011".to_vec();
    v.extend([0x00, 0x01, b'k', 0x81, 0, 0, 0, 0, 0x10, 0, 0, 0]);
    assert!(matches!(
        decode_all(&v, 4),
        Err(ObjectError::Truncated { .. })
    ));
    let mut d = RdbDecoder::with_limit(1000);
    d.feed(&v);
    assert!(matches!(d.next_item(), Err(ObjectError::InKey { .. })));
}

#[test]
fn dump_payload_layout() {
    let e = Entry {
        db: 0,
        key: b"k".to_vec(),
        expire_ms: None,
        rdb_type: 0,
        value: Value::String(b"v".to_vec()),
        raw: vec![1, b'v'],
    };
    let p = dump_payload(&e, 9);
    assert_eq!(&p[..5], &[0, 1, b'v', 9, 0]);
    let mut crc = Crc64::new();
    crc.update(&p[..5]);
    assert_eq!(p[5..], crc.finish().to_le_bytes());
}
