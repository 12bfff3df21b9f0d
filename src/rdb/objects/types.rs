//! Decoding one serialized object by its RDB type byte (`rdbLoadObject` in rdb.c): strings,
//! lists, sets, sorted sets and hashes in every encoding; streams are in `stream.rs`.

use super::cursor::{parse_f64, parse_i64, Cursor, Res, Short};
use super::{module_name, packed, stream, HashField, ObjectError, Value};
use crate::rdb::RdbFlavor;

pub(crate) const T_STRING: u8 = 0;
pub(crate) const T_LIST: u8 = 1;
pub(crate) const T_SET: u8 = 2;
pub(crate) const T_ZSET: u8 = 3;
pub(crate) const T_HASH: u8 = 4;
pub(crate) const T_ZSET_2: u8 = 5;
pub(crate) const T_MODULE_PRE_GA: u8 = 6;
pub(crate) const T_MODULE_2: u8 = 7;
pub(crate) const T_HASH_ZIPMAP: u8 = 9;
pub(crate) const T_LIST_ZIPLIST: u8 = 10;
pub(crate) const T_SET_INTSET: u8 = 11;
pub(crate) const T_ZSET_ZIPLIST: u8 = 12;
pub(crate) const T_HASH_ZIPLIST: u8 = 13;
pub(crate) const T_LIST_QUICKLIST: u8 = 14;
pub(crate) const T_STREAM_LISTPACKS: u8 = 15;
pub(crate) const T_HASH_LISTPACK: u8 = 16;
pub(crate) const T_ZSET_LISTPACK: u8 = 17;
pub(crate) const T_LIST_QUICKLIST_2: u8 = 18;
pub(crate) const T_STREAM_LISTPACKS_2: u8 = 19;
pub(crate) const T_SET_LISTPACK: u8 = 20;
pub(crate) const T_STREAM_LISTPACKS_3: u8 = 21;
/// Redis: HASH_METADATA_PRE_GA (7.4 RC); Valkey: HASH_2 (field TTLs, RDB 80).
pub(crate) const T_22: u8 = 22;
/// Redis: HASH_LISTPACK_EX_PRE_GA (7.4 RC); Valkey: PATH_HASH (RDB 81, not supported).
pub(crate) const T_23: u8 = 23;
pub(crate) const T_HASH_METADATA: u8 = 24;
pub(crate) const T_HASH_LISTPACK_EX: u8 = 25;

/// Whether a byte in opcode position starts a key of this type.
pub(crate) fn is_object_type(t: u8, flavor: RdbFlavor) -> bool {
    match flavor {
        RdbFlavor::Redis => t <= 7 || (9..=25).contains(&t),
        RdbFlavor::Valkey => t <= 7 || (9..=23).contains(&t),
    }
}

/// Decodes the object that follows the key. `key` only names errors.
pub(crate) fn decode(c: &mut Cursor<'_>, t: u8, flavor: RdbFlavor, key: &[u8]) -> Res<Value> {
    let blob = |c: &mut Cursor<'_>| -> Res<(u64, Vec<u8>)> {
        let at = c.offset();
        Ok((at, c.string()?))
    };
    let packed_err = |at: u64, what: String| {
        Short::Bad(ObjectError::Corrupt {
            offset: at,
            what: format!("type {t}: {what}"),
        })
    };
    Ok(match t {
        T_STRING => Value::String(c.string()?),
        T_LIST | T_SET => {
            let n = c.count(1)?;
            let mut items = Vec::with_capacity(n.min(c.remaining()));
            for _ in 0..n {
                items.push(c.string()?);
            }
            if t == T_LIST {
                Value::List(items)
            } else {
                Value::Set(items)
            }
        }
        T_ZSET | T_ZSET_2 => {
            let n = c.count(2)?;
            let mut items = Vec::with_capacity(n.min(c.remaining()));
            for _ in 0..n {
                let member = c.string()?;
                let score = if t == T_ZSET_2 {
                    c.binary_double()?
                } else {
                    c.text_double()?
                };
                if score.is_nan() {
                    return Err(c.bad("sorted set score is NaN"));
                }
                items.push((member, score));
            }
            Value::ZSet(items)
        }
        T_HASH => {
            let n = c.count(2)?;
            let mut fields = Vec::with_capacity(n.min(c.remaining()));
            for _ in 0..n {
                let field = c.string()?;
                let value = c.string()?;
                fields.push(HashField {
                    field,
                    value,
                    expire_ms: None,
                });
            }
            Value::Hash(fields)
        }
        T_22 if flavor == RdbFlavor::Valkey => {
            // Valkey HASH_2: count, then field, value, 8-byte absolute expiry (-1: none).
            let n = c.count(10)?;
            let mut fields = Vec::with_capacity(n.min(c.remaining()));
            for _ in 0..n {
                let field = c.string()?;
                let value = c.string()?;
                let expiry = c.millis()?;
                if expiry < -1 {
                    return Err(c.bad(format!("hash field expiry {expiry}")));
                }
                fields.push(HashField {
                    field,
                    value,
                    expire_ms: (expiry != -1).then_some(expiry),
                });
            }
            Value::Hash(fields)
        }
        T_22 | T_HASH_METADATA => {
            // Redis: [min expiry, 8 bytes], count, then ttl (length), field, value. For
            // HASH_METADATA a non-zero ttl is relative: expiry = ttl + min - 1.
            let min = if t == T_HASH_METADATA {
                Some(c.millis()?)
            } else {
                None
            };
            let n = c.count(3)?;
            let mut fields = Vec::with_capacity(n.min(c.remaining()));
            for _ in 0..n {
                let ttl = c.len()?;
                let field = c.string()?;
                let value = c.string()?;
                let expire_ms = match (ttl, min) {
                    (0, _) => None,
                    (ttl, Some(min)) => Some(
                        i64::try_from(ttl)
                            .ok()
                            .and_then(|ttl| ttl.checked_add(min)?.checked_sub(1))
                            .ok_or_else(|| c.bad("hash field expiry out of range"))?,
                    ),
                    (ttl, None) => Some(
                        i64::try_from(ttl).map_err(|_| c.bad("hash field expiry out of range"))?,
                    ),
                };
                fields.push(HashField {
                    field,
                    value,
                    expire_ms,
                });
            }
            Value::Hash(fields)
        }
        T_LIST_QUICKLIST | T_LIST_QUICKLIST_2 => {
            let nodes = c.count(2)?;
            let mut items = Vec::new();
            for _ in 0..nodes {
                let container = if t == T_LIST_QUICKLIST_2 { c.len()? } else { 2 };
                let (at, data) = blob(c)?;
                match container {
                    // PLAIN: one large element stored as is.
                    1 => items.push(data),
                    2 if t == T_LIST_QUICKLIST_2 => {
                        items.extend(packed::listpack(&data).map_err(|e| packed_err(at, e))?)
                    }
                    2 => items.extend(packed::ziplist(&data).map_err(|e| packed_err(at, e))?),
                    other => return Err(c.bad(format!("quicklist container {other}"))),
                }
            }
            Value::List(items)
        }
        T_LIST_ZIPLIST => {
            let (at, data) = blob(c)?;
            Value::List(packed::ziplist(&data).map_err(|e| packed_err(at, e))?)
        }
        T_SET_INTSET => {
            let (at, data) = blob(c)?;
            Value::Set(packed::intset(&data).map_err(|e| packed_err(at, e))?)
        }
        T_SET_LISTPACK => {
            let (at, data) = blob(c)?;
            Value::Set(packed::listpack(&data).map_err(|e| packed_err(at, e))?)
        }
        T_ZSET_ZIPLIST | T_ZSET_LISTPACK => {
            let (at, data) = blob(c)?;
            let elems = if t == T_ZSET_ZIPLIST {
                packed::ziplist(&data)
            } else {
                packed::listpack(&data)
            }
            .map_err(|e| packed_err(at, e))?;
            let mut items = Vec::with_capacity(elems.len() / 2);
            for pair in pairs(elems, at, t)? {
                let [member, score] = pair;
                let score = parse_f64(&score)
                    .filter(|s| !s.is_nan())
                    .ok_or_else(|| packed_err(at, "bad sorted set score".into()))?;
                items.push((member, score));
            }
            Value::ZSet(items)
        }
        T_HASH_ZIPLIST | T_HASH_LISTPACK => {
            let (at, data) = blob(c)?;
            let elems = if t == T_HASH_ZIPLIST {
                packed::ziplist(&data)
            } else {
                packed::listpack(&data)
            }
            .map_err(|e| packed_err(at, e))?;
            let fields = pairs(elems, at, t)?
                .map(|[field, value]| HashField {
                    field,
                    value,
                    expire_ms: None,
                })
                .collect();
            Value::Hash(fields)
        }
        T_23 | T_HASH_LISTPACK_EX if flavor == RdbFlavor::Redis => {
            // [min expiry], then a listpack of (field, value, absolute expiry or 0) triplets.
            if t == T_HASH_LISTPACK_EX {
                c.millis()?;
            }
            let (at, data) = blob(c)?;
            let elems = packed::listpack(&data).map_err(|e| packed_err(at, e))?;
            if !elems.len().is_multiple_of(3) {
                return Err(packed_err(
                    at,
                    "listpack is not field/value/ttl triplets".into(),
                ));
            }
            let mut fields = Vec::with_capacity(elems.len() / 3);
            let mut it = elems.into_iter();
            while let (Some(field), Some(value), Some(ttl)) = (it.next(), it.next(), it.next()) {
                let ttl = parse_i64(&ttl)
                    .filter(|t| *t >= 0)
                    .ok_or_else(|| packed_err(at, "bad hash field ttl".into()))?;
                fields.push(HashField {
                    field,
                    value,
                    expire_ms: (ttl != 0).then_some(ttl),
                });
            }
            Value::Hash(fields)
        }
        T_STREAM_LISTPACKS | T_STREAM_LISTPACKS_2 | T_STREAM_LISTPACKS_3 => {
            Value::Stream(Box::new(stream::decode(c, t)?))
        }
        T_MODULE_PRE_GA | T_MODULE_2 => {
            let id = c.len()?;
            return Err(Short::Bad(ObjectError::ModuleKey {
                key: String::from_utf8_lossy(key).into_owned(),
                module: module_name(id),
            }));
        }
        T_HASH_ZIPMAP => return Err(c.bad("zipmap hashes (Redis < 2.6) are not supported")),
        T_23 => return Err(c.bad("Valkey path hashes (RDB type 23) are not supported")),
        other => return Err(c.bad(format!("unknown RDB object type {other}"))),
    })
}

/// Splits a flat element list into pairs; an odd count is corruption.
fn pairs(elems: Vec<Vec<u8>>, at: u64, t: u8) -> Res<impl Iterator<Item = [Vec<u8>; 2]>> {
    if !elems.len().is_multiple_of(2) {
        return Err(Short::Bad(ObjectError::Corrupt {
            offset: at,
            what: format!("type {t}: odd number of elements in a pair list"),
        }));
    }
    let mut it = elems.into_iter();
    Ok(std::iter::from_fn(move || Some([it.next()?, it.next()?])))
}
