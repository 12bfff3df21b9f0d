//! The stream side of apply (pure): log bytes in, batches of target commands out, each with
//! the origin offset it ends at. Drops PING and REPLCONF, maps SELECT onto the target's
//! databases, and never cuts a batch inside a source MULTI/EXEC (the batch is itself one
//! transaction, so the source's stays atomic).

use bytes::{Bytes, BytesMut};

use crate::resp::{parse_command, Limits};

use super::ApplyError;

/// One thing a batch does in the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Switch the connection to this target database.
    Select(u32),
    /// A command as the origin wrote it (after renames), with the origin offset of its
    /// last byte.
    Cmd { args: Vec<Bytes>, end: u64 },
}

/// Commands that are applied up to `end` (the origin offset of the last byte covered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The target database the batch starts in.
    pub db: u32,
    pub ops: Vec<Op>,
    pub end: u64,
}

impl Batch {
    pub fn commands(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| matches!(o, Op::Cmd { .. }))
            .count()
    }
}

/// Cuts the log into batches.
pub struct Batcher {
    buf: BytesMut,
    /// Origin offset of `buf[0]`.
    pos: u64,
    limits: Limits,
    map_db: Box<dyn Fn(u32) -> Result<u32, ApplyError> + Send>,
    /// The target database in effect after the last parsed command.
    db: u32,
    /// The database the pending ops start in.
    start_db: u32,
    in_multi: bool,
    ops: Vec<Op>,
    bytes: usize,
    /// Ops and end of the prefix of `ops` that lies outside any source transaction.
    safe: usize,
    safe_end: Option<u64>,
    /// `RESTORE-ASKING`s parsed since the last [`take_imports`](Self::take_imports): keys an
    /// origin slot migration moved into this lane's shard.
    imports: Option<Imports>,
}

/// Keys migrated into the lane's origin shard: how many, and the first one with its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imports {
    pub count: u64,
    pub first_key: Bytes,
    pub first_offset: u64,
}

impl Batcher {
    /// A batcher whose first byte is origin offset `from`; `map_db` maps a source database
    /// onto the target's (or refuses it).
    pub fn new(
        from: u64,
        map_db: impl Fn(u32) -> Result<u32, ApplyError> + Send + 'static,
    ) -> Batcher {
        Batcher {
            buf: BytesMut::new(),
            pos: from,
            limits: Limits::default(),
            map_db: Box::new(map_db),
            db: 0,
            start_db: 0,
            in_multi: false,
            ops: Vec::new(),
            bytes: 0,
            safe: 0,
            safe_end: None,
            imports: None,
        }
    }

    /// The `RESTORE-ASKING`s (origin slot migrations) parsed since the last call.
    pub fn take_imports(&mut self) -> Option<Imports> {
        self.imports.take()
    }

    /// Origin offset of the next byte expected.
    pub fn position(&self) -> u64 {
        self.pos + self.buf.len() as u64
    }

    /// Feeds log bytes starting at `offset`, which must be [`position`](Self::position).
    pub fn feed(&mut self, offset: u64, data: &[u8]) -> Result<(), ApplyError> {
        if offset != self.position() {
            return Err(ApplyError::Gap {
                expected: self.position(),
                got: offset,
            });
        }
        self.buf.extend_from_slice(data);
        self.parse()
    }

    fn parse(&mut self) -> Result<(), ApplyError> {
        loop {
            let before = self.buf.len();
            let at = self.pos;
            let args = match parse_command(&mut self.buf, &self.limits) {
                Ok(Some(a)) => a,
                Ok(None) => return Ok(()),
                Err(e) => {
                    return Err(ApplyError::Stream {
                        offset: at,
                        message: e.to_string(),
                    })
                }
            };
            let used = (before - self.buf.len()) as u64;
            self.pos += used;
            self.command(args, self.pos - 1, at)?;
        }
    }

    fn command(&mut self, mut args: Vec<Bytes>, end: u64, at: u64) -> Result<(), ApplyError> {
        let name = args
            .first()
            .map(|a| a.to_ascii_uppercase())
            .unwrap_or_default();
        match name.as_slice() {
            b"" | b"PING" | b"REPLCONF" => {}
            b"SELECT" => {
                let n = args
                    .get(1)
                    .and_then(|a| std::str::from_utf8(a).ok())
                    .and_then(|s| s.parse::<u32>().ok())
                    .ok_or_else(|| ApplyError::Stream {
                        offset: at,
                        message: "SELECT without a database number".into(),
                    })?;
                let db = (self.map_db)(n).map_err(|e| match e {
                    ApplyError::Database { db, why, .. } => ApplyError::Database {
                        db,
                        why,
                        offset: at,
                    },
                    other => other,
                })?;
                if db != self.db {
                    if self.ops.is_empty() {
                        self.start_db = db;
                    } else {
                        self.ops.push(Op::Select(db));
                    }
                    self.db = db;
                }
            }
            b"MULTI" => self.in_multi = true,
            b"EXEC" => self.in_multi = false,
            _ => {
                if name.as_slice() == b"RESTORE-ASKING" {
                    args[0] = Bytes::from_static(b"RESTORE");
                    let key = args.get(1).cloned().unwrap_or_default();
                    let i = self.imports.get_or_insert(Imports {
                        count: 0,
                        first_key: key,
                        first_offset: end,
                    });
                    i.count += 1;
                }
                self.bytes += args.iter().map(|a| a.len() + 8).sum::<usize>();
                self.ops.push(Op::Cmd { args, end });
            }
        }
        if !self.in_multi {
            self.safe = self.ops.len();
            self.safe_end = Some(end);
        }
        Ok(())
    }

    /// Bytes of pending commands (a hint for when to cut).
    pub fn pending_bytes(&self) -> usize {
        self.bytes
    }

    /// Pending commands, complete or not.
    pub fn pending(&self) -> usize {
        self.ops.len()
    }

    /// The batch of everything parsed outside a source transaction, or `None` when nothing
    /// new lies outside one (a batch may hold no command: it still moves the checkpoint past
    /// PINGs and keepalives).
    pub fn take(&mut self) -> Option<Batch> {
        let end = self.safe_end.take()?;
        let rest = self.ops.split_off(self.safe);
        let ops = std::mem::replace(&mut self.ops, rest);
        let db = self.start_db;
        // The remaining (in-transaction) ops start in the database in effect at the cut.
        self.start_db = ops.iter().fold(db, |d, o| match o {
            Op::Select(n) => *n,
            Op::Cmd { .. } => d,
        });
        self.safe = 0;
        self.bytes = self
            .ops
            .iter()
            .map(|o| match o {
                Op::Cmd { args, .. } => args.iter().map(|a| a.len() + 8).sum(),
                Op::Select(_) => 0,
            })
            .sum();
        Some(Batch { db, ops, end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::command;

    fn cmds(parts: &[&[&str]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            let a: Vec<&[u8]> = p.iter().map(|s| s.as_bytes()).collect();
            out.extend_from_slice(&command(&a));
        }
        out
    }

    fn names(b: &Batch) -> Vec<String> {
        b.ops
            .iter()
            .map(|o| match o {
                Op::Select(n) => format!("select {n}"),
                Op::Cmd { args, .. } => String::from_utf8_lossy(&args[0]).into_owned(),
            })
            .collect()
    }

    fn same_db(n: u32) -> Result<u32, ApplyError> {
        Ok(n)
    }

    #[test]
    fn drops_ping_and_replconf_and_tracks_offsets() {
        let data = cmds(&[
            &["PING"],
            &["SET", "a", "1"],
            &["REPLCONF", "GETACK", "*"],
            &["INCR", "a"],
        ]);
        let mut b = Batcher::new(101, same_db);
        b.feed(101, &data).unwrap();
        let batch = b.take().unwrap();
        assert_eq!(names(&batch), ["SET", "INCR"]);
        assert_eq!(batch.end, 100 + data.len() as u64);
        assert_eq!(b.position(), 101 + data.len() as u64);
        assert!(b.take().is_none());
        // Only keepalives: an empty batch that still moves the checkpoint.
        b.feed(b.position(), b"\n").unwrap();
        let k = b.take().unwrap();
        assert!(k.ops.is_empty() && k.end == 101 + data.len() as u64);
        assert!(matches!(b.feed(1, b"x"), Err(ApplyError::Gap { .. })));
    }

    #[test]
    fn any_chunking_gives_the_same_batches() {
        let data = cmds(&[
            &["SELECT", "2"],
            &["SET", "a", "1"],
            &["SELECT", "0"],
            &["DEL", "b"],
            &["PING"],
        ]);
        let mut whole = Batcher::new(1, same_db);
        whole.feed(1, &data).unwrap();
        let want = whole.take().unwrap();
        assert_eq!(want.db, 2);
        assert_eq!(names(&want), ["SET", "select 0", "DEL"]);
        let mut byte = Batcher::new(1, same_db);
        for (i, c) in data.iter().enumerate() {
            byte.feed(1 + i as u64, &[*c]).unwrap();
        }
        let mut ops = Vec::new();
        let mut first_db = None;
        while let Some(x) = byte.take() {
            first_db.get_or_insert(x.db);
            ops.extend(x.ops);
        }
        assert_eq!(first_db, Some(2));
        assert_eq!(ops, want.ops);
    }

    #[test]
    fn never_cuts_inside_a_source_transaction() {
        let head = cmds(&[&["SET", "x", "0"], &["MULTI"], &["INCR", "a"]]);
        let tail = cmds(&[&["INCR", "b"], &["EXEC"]]);
        let mut b = Batcher::new(1, same_db);
        b.feed(1, &head).unwrap();
        let first = b.take().unwrap();
        assert_eq!(names(&first), ["SET"]);
        assert_eq!(b.pending(), 1);
        assert!(b.take().is_none());
        b.feed(b.position(), &tail).unwrap();
        let second = b.take().unwrap();
        assert_eq!(names(&second), ["INCR", "INCR"]);
        assert_eq!(second.end, (head.len() + tail.len()) as u64);
    }

    #[test]
    fn databases_are_mapped_or_refused_with_the_offset() {
        let data = cmds(&[&["SELECT", "3"], &["SET", "a", "1"]]);
        let mut b = Batcher::new(1, |n| if n == 3 { Ok(0) } else { Ok(n) });
        b.feed(1, &data).unwrap();
        assert_eq!(b.take().unwrap().db, 0);
        let mut c = Batcher::new(1, |n| {
            Err(ApplyError::Database {
                db: n,
                why: "a cluster target has database 0 only".into(),
                offset: 0,
            })
        });
        let e = c.feed(1, &data).unwrap_err().to_string();
        assert!(
            e.contains("database 3") && e.contains("offset 1") && e.contains("cluster"),
            "{e}"
        );
        let mut bad = Batcher::new(1, same_db);
        assert!(bad
            .feed(1, b"*1\r\n:5\r\n")
            .unwrap_err()
            .to_string()
            .contains("offset 1"));
    }

    #[test]
    fn restore_asking_becomes_restore() {
        let data = cmds(&[&["RESTORE-ASKING", "k", "0", "payload"]]);
        let mut b = Batcher::new(1, same_db);
        b.feed(1, &data).unwrap();
        assert_eq!(names(&b.take().unwrap()), ["RESTORE"]);
        assert_eq!(
            b.take_imports(),
            Some(Imports {
                count: 1,
                first_key: Bytes::from_static(b"k"),
                first_offset: data.len() as u64,
            })
        );
        assert_eq!(b.take_imports(), None);
        let more = cmds(&[&["SET", "a", "1"]]);
        b.feed(1 + data.len() as u64, &more).unwrap();
        assert_eq!(b.take_imports(), None, "only RESTORE-ASKING counts");
    }
}
