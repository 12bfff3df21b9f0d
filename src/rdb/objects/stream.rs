//! Stream objects (RDB types 15, 19, 21; `rdbLoadObject` + the listpack layout of
//! `t_stream.c`): entries, metadata, consumer groups with their PELs and consumers.

use super::cursor::{parse_i64, Cursor, Res, Short};
use super::types::{T_STREAM_LISTPACKS_2, T_STREAM_LISTPACKS_3};
use super::{
    packed, Consumer, ConsumerGroup, ObjectError, PendingEntry, Stream, StreamEntry, StreamId,
};

const FLAG_DELETED: i64 = 1;
const FLAG_SAMEFIELDS: i64 = 2;

pub(crate) fn decode(c: &mut Cursor<'_>, t: u8) -> Res<Stream> {
    let mut s = Stream::default();
    let nodes = c.count(2)?;
    for _ in 0..nodes {
        let at = c.offset();
        let key = c.string()?;
        let master = raw_id(&key).ok_or_else(|| c.bad("stream node key is not 16 bytes"))?;
        let lp_at = c.offset();
        let lp = c.string()?;
        let elems = packed::listpack(&lp).map_err(|e| corrupt(lp_at, e))?;
        node_entries(master, &elems, &mut s.entries).map_err(|e| corrupt(at, e))?;
    }
    s.length = c.len()?;
    s.last_id = id(c)?;
    if t >= T_STREAM_LISTPACKS_2 {
        s.first_id = Some(id(c)?);
        s.max_deleted_id = Some(id(c)?);
        s.entries_added = Some(c.len()?);
    }
    let groups = c.count(3)?;
    for _ in 0..groups {
        let name = c.string()?;
        let last_id = id(c)?;
        let entries_read = if t >= T_STREAM_LISTPACKS_2 {
            Some(c.len()?)
        } else {
            None
        };
        let pel = c.count(18)?;
        let mut pending = Vec::with_capacity(pel.min(c.remaining() / 18));
        for _ in 0..pel {
            let id = raw_id(c.take(16)?).ok_or(Short::Need)?;
            let delivery_time_ms = c.millis()?;
            let delivery_count = c.len()?;
            pending.push(PendingEntry {
                id,
                delivery_time_ms,
                delivery_count,
            });
        }
        let known: std::collections::HashSet<StreamId> = pending.iter().map(|p| p.id).collect();
        let n = c.count(10)?;
        let mut consumers = Vec::with_capacity(n.min(c.remaining() / 10));
        for _ in 0..n {
            let name = c.string()?;
            let seen_time_ms = c.millis()?;
            let active_time_ms = if t >= T_STREAM_LISTPACKS_3 {
                Some(c.millis()?)
            } else {
                None
            };
            let owned = c.count(16)?;
            let mut ids = Vec::with_capacity(owned.min(c.remaining() / 16));
            for _ in 0..owned {
                let id = raw_id(c.take(16)?).ok_or(Short::Need)?;
                if !known.contains(&id) {
                    return Err(c.bad(format!("consumer PEL entry {id} not in the group PEL")));
                }
                ids.push(id);
            }
            consumers.push(Consumer {
                name,
                seen_time_ms,
                active_time_ms,
                pending: ids,
            });
        }
        s.groups.push(ConsumerGroup {
            name,
            last_id,
            entries_read,
            pending,
            consumers,
        });
    }
    Ok(s)
}

fn corrupt(offset: u64, what: String) -> Short {
    Short::Bad(ObjectError::Corrupt {
        offset,
        what: format!("stream: {what}"),
    })
}

fn id(c: &mut Cursor<'_>) -> Res<StreamId> {
    Ok(StreamId {
        ms: c.len()?,
        seq: c.len()?,
    })
}

/// A 16-byte big-endian `<ms><seq>` ID (`streamEncodeID`).
fn raw_id(b: &[u8]) -> Option<StreamId> {
    let b: [u8; 16] = b.try_into().ok()?;
    let (ms, seq) = b.split_at(8);
    Some(StreamId {
        ms: u64::from_be_bytes(ms.try_into().ok()?),
        seq: u64::from_be_bytes(seq.try_into().ok()?),
    })
}

/// Walks one node's listpack: the master entry (count, deleted, fields…, 0), then entries
/// of `flags, ms-diff, seq-diff, [n, field, value…] | [value…], lp-count`.
fn node_entries(master: StreamId, e: &[Vec<u8>], out: &mut Vec<StreamEntry>) -> Result<(), String> {
    let mut it = e.iter();
    let mut next =
        || -> Result<&Vec<u8>, String> { Ok(it.next().ok_or("listpack ends inside an entry")?) };
    let int = |v: &[u8]| parse_i64(v).ok_or_else(|| "expected an integer".to_string());
    let count = int(next()?)?;
    let deleted = int(next()?)?;
    let nfields = usize::try_from(int(next()?)?).map_err(|_| "negative field count")?;
    if nfields > e.len() {
        return Err("master field count larger than the listpack".into());
    }
    let mut master_fields = Vec::with_capacity(nfields);
    for _ in 0..nfields {
        master_fields.push(next()?.clone());
    }
    if int(next()?)? != 0 {
        return Err("master entry not terminated by 0".into());
    }
    let (mut live, mut dead) = (0i64, 0i64);
    while let Ok(flags) = next() {
        let flags = int(flags)?;
        let ms = u64::try_from(int(next()?)?).map_err(|_| "negative ID delta")?;
        let seq = u64::try_from(int(next()?)?).map_err(|_| "negative ID delta")?;
        let id = StreamId {
            ms: master.ms.checked_add(ms).ok_or("ID overflow")?,
            seq: master.seq.checked_add(seq).ok_or("ID overflow")?,
        };
        let mut fields = Vec::new();
        if flags & FLAG_SAMEFIELDS != 0 {
            for f in &master_fields {
                fields.push((f.clone(), next()?.clone()));
            }
        } else {
            let n = usize::try_from(int(next()?)?).map_err(|_| "negative field count")?;
            if n > e.len() {
                return Err("entry field count larger than the listpack".into());
            }
            for _ in 0..n {
                let f = next()?.clone();
                fields.push((f, next()?.clone()));
            }
        }
        next()?; // lp-count
        if flags & FLAG_DELETED != 0 {
            dead += 1;
        } else {
            live += 1;
            out.push(StreamEntry { id, fields });
        }
    }
    if (live, dead) != (count, deleted) {
        return Err(format!(
            "master entry counts {count} live / {deleted} deleted, found {live} / {dead}"
        ));
    }
    Ok(())
}
