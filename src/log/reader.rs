//! Tailing readers: each has its own cursor, preads segment files (on the log's reader pool,
//! never on a tokio worker), returns chunks that start exactly at the cursor, waits on the head
//! watch when caught up, and turns a bad record into a corruption barrier instead of serving it.

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use super::blocks::Blocks;
use super::fsutil::{drop_page_cache, io_err};
use super::record::{self, Decoded, RecordHeader, HEADER_LEN};
use super::segment::{read_at_most, IndexEntry};
use super::{Inner, Log, LogError, Shared};

/// Bytes of the log starting at `offset`.
#[derive(Clone, Debug)]
pub struct Chunk {
    /// Offset of `data[0]`.
    pub offset: u64,
    /// Origin timestamp of the record containing `data[0]`.
    pub timestamp_us: u64,
    pub data: Bytes,
}

/// Where to read, decided under the lock.
struct Plan {
    seg_first: u64,
    path: PathBuf,
    /// A record start at or before the cursor, and its first offset.
    pos: u64,
    rec: u64,
    /// File bytes holding complete records (everything ≤ head).
    limit: u64,
    seg_end: u64,
}

/// The last verified record, kept so a record larger than `max` is read and checked once.
struct Cached {
    seg_first: u64,
    rec: u64,
    header: RecordHeader,
    payload: Bytes,
}

/// A cursor over the log. Memory: one read block (≈ max(max, 64 KiB)) plus one record, and
/// the blocks it keeps for reuse ([`Blocks`]).
pub struct LogReader {
    head_rx: watch::Receiver<u64>,
    /// Next offset to return (the cursor may be ahead of it by a read not yet taken).
    position: u64,
    cursor: Arc<Mutex<Cursor>>,
    /// A read running on the reader pool; its result waits in `Cursor::ready`. Kept across a
    /// cancelled `next_pieces` so no read is lost or done twice.
    inflight: Option<tokio::sync::oneshot::Receiver<()>>,
}

type Read = Result<Option<Vec<Chunk>>, LogError>;

/// The reader's file state, used on the reader pool.
struct Cursor {
    shared: Arc<Shared>,
    epoch: u64,
    cursor: u64,
    file: Option<(u64, File)>,
    /// Record start for the next sequential read: (segment first, pos, record offset).
    hint: Option<(u64, u64, u64)>,
    cached: Option<Cached>,
    /// The result of the last pool read, not yet taken.
    ready: Option<Read>,
    /// A read that failed after good records were returned: (segment first, pos, record
    /// offset, error). The next read at that record reports it instead of trying again, so a
    /// read error is treated as an unreadable range whether or not it ended a chunk.
    failed: Option<(u64, u64, u64, String)>,
    blocks: Blocks,
}

fn lock(c: &Mutex<Cursor>) -> MutexGuard<'_, Cursor> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn plan(
        &self,
        epoch: u64,
        cursor: u64,
        hint: Option<(u64, u64, u64)>,
    ) -> Result<Option<Plan>, LogError> {
        let gone = LogError::Gone { offset: cursor };
        if !self.state.has_epoch() || self.state.epoch != epoch || cursor < self.first_valid {
            return Err(gone);
        }
        if cursor > self.head {
            return Ok(None);
        }
        let i = self.segments.partition_point(|s| s.first <= cursor);
        let Some(seg) = i
            .checked_sub(1)
            .and_then(|i| self.segments.get(i))
            .filter(|s| s.contains(cursor))
        else {
            return Err(gone);
        };
        let e = seg.locate(cursor);
        let (pos, rec) = match hint {
            Some((f, p, r)) if f == seg.first && r <= cursor && r >= e.offset => (p, r),
            _ => (e.pos, e.offset),
        };
        Ok(Some(Plan {
            seg_first: seg.first,
            path: seg.path.clone(),
            pos,
            rec,
            limit: seg.size,
            seg_end: seg.end,
        }))
    }

    /// A reader found a bad record at `rec`: nothing below `barrier` is served any more.
    fn note_corruption(
        &mut self,
        seg_first: u64,
        rec: u64,
        barrier: u64,
        next: Option<IndexEntry>,
        path: &std::path::Path,
    ) {
        let barrier = barrier.min(self.head + 1);
        if barrier <= self.first_valid {
            return;
        }
        if let (Some(e), Some(seg)) = (
            next,
            self.segments.iter_mut().find(|s| s.first == seg_first),
        ) {
            let i = seg.index.partition_point(|x| x.offset < e.offset);
            if seg.index.get(i).is_none_or(|x| x.offset != e.offset) {
                seg.index.insert(i, e);
            }
        }
        self.first_valid = barrier;
        self.corrupt_floor = barrier;
        self.corruptions_total += 1;
        if barrier > self.head {
            self.force_rotate = true;
        }
        tracing::error!(path = %path.display(), offset = rec, first_valid = barrier, "corrupt record in the log; offsets below first_valid are no longer served");
        self.state.barrier = barrier;
        if let Err(e) = self.state.save(&self.root) {
            tracing::warn!(error = %e, "could not persist the corruption barrier");
        }
    }
}

impl Log {
    /// A reader starting at `from` (first_valid ≤ from ≤ head+1, else `Gone`).
    pub fn reader(&self, from: u64) -> Result<LogReader, LogError> {
        let g = self.shared.lock();
        if !g.state.has_epoch() {
            return Err(LogError::NoEpoch);
        }
        if from < g.first_valid || from > g.head + 1 {
            return Err(LogError::Gone { offset: from });
        }
        Ok(LogReader {
            head_rx: self.shared.head_tx.subscribe(),
            position: from,
            cursor: Arc::new(Mutex::new(Cursor {
                shared: Arc::clone(&self.shared),
                epoch: g.state.epoch,
                cursor: from,
                file: None,
                hint: None,
                cached: None,
                ready: None,
                failed: None,
                blocks: Blocks::default(),
            })),
            inflight: None,
        })
    }
}

/// Consecutive pieces as one chunk (offset and timestamp of the first); copies only if several.
pub fn join_pieces(mut parts: Vec<Chunk>) -> Chunk {
    if parts.len() == 1 {
        if let Some(c) = parts.pop() {
            return c;
        }
    }
    let len = parts.iter().map(|p| p.data.len()).sum();
    let mut b = BytesMut::with_capacity(len);
    parts.iter().for_each(|p| b.extend_from_slice(&p.data));
    Chunk {
        offset: parts.first().map_or(0, |p| p.offset),
        timestamp_us: parts.first().map_or(0, |p| p.timestamp_us),
        data: b.freeze(),
    }
}

/// Bytes `[pos, pos+n)` from `block`, reading a new block of ≥ `want` bytes if needed.
/// `None` if the range is not within `limit` or the file is shorter than expected.
fn fetch(
    blocks: &mut Blocks,
    block: &mut Option<(u64, Bytes)>,
    file: &File,
    plan: &Plan,
    pos: u64,
    n: u64,
    want: u64,
) -> std::io::Result<Option<Bytes>> {
    if pos + n > plan.limit {
        return Ok(None);
    }
    if let Some((start, data)) = block.as_ref() {
        if pos >= *start && pos + n <= start + data.len() as u64 {
            let from = (pos - start) as usize;
            return Ok(Some(data.slice(from..from + n as usize)));
        }
    }
    let len = (plan.limit - pos).min(n.max(want));
    if crate::failpoint::hit("read") {
        return Err(crate::failpoint::io_error("read"));
    }
    // Into a block of an earlier read once quinn has let go of it, never zeroed first: zeroing
    // 1 MiB before `pread` overwrites it, or faulting in fresh pages the kernel zeroes, cost as
    // much CPU as the CRC check.
    let data = blocks.read(file, len as usize, want as usize, pos)?;
    let got = data.len();
    if (got as u64) < n {
        return Ok(None);
    }
    let out = data.slice(..n as usize);
    *block = Some((pos, data));
    Ok(Some(out))
}

impl LogReader {
    /// Next offset to return.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Wait until at least one byte is available, then return up to `max` bytes.
    pub async fn next(&mut self, max: usize) -> Result<Chunk, LogError> {
        self.next_pieces(max).await.map(join_pieces)
    }

    /// Like [`next`](Self::next), but as the records' own buffers, uncopied: consecutive
    /// pieces, each within one record (so with that record's timestamp). The reads run on the
    /// log's reader pool. Cancel-safe: a read cut short by a dropped call is returned by the
    /// next one.
    pub async fn next_pieces(&mut self, max: usize) -> Result<Vec<Chunk>, LogError> {
        loop {
            self.prefetch(max)?;
            if let Some(rx) = self.inflight.as_mut() {
                // An Err means the job died (a panic): `ready` then stays empty.
                let _ = rx.await;
            }
            self.inflight = None;
            let ready = lock(&self.cursor).ready.take();
            match ready {
                Some(Ok(Some(pieces))) => return Ok(self.deliver(pieces)),
                Some(Ok(None)) => {}
                Some(Err(e)) => return Err(e),
                None => return Err(LogError::Stopped),
            }
            if self.head_rx.changed().await.is_err() {
                return Err(LogError::Gone {
                    offset: self.position,
                });
            }
        }
    }

    /// Starts the next read of up to `max` bytes on the reader pool, unless one is running or
    /// its result is waiting; the next [`next_pieces`](Self::next_pieces) takes it. Lets the
    /// caller send one chunk while the next one is read.
    pub fn prefetch(&mut self, max: usize) -> Result<(), LogError> {
        if self.inflight.is_some() {
            return Ok(());
        }
        // Seen before reading, so a head change during the read wakes the wait for new data.
        self.head_rx.borrow_and_update();
        let cursor = Arc::clone(&self.cursor);
        let (done, rx) = tokio::sync::oneshot::channel();
        super::io::submit_read(move || {
            let mut c = lock(&cursor);
            if c.ready.is_none() {
                let r = c.try_pieces(max);
                c.ready = Some(r);
            }
            drop(c);
            let _ = done.send(());
        })?;
        self.inflight = Some(rx);
        Ok(())
    }

    fn deliver(&mut self, pieces: Vec<Chunk>) -> Vec<Chunk> {
        if let Some(last) = pieces.last() {
            self.position = last.offset + last.data.len() as u64;
        }
        pieces
    }

    /// Up to `max` bytes from the cursor, or `None` when caught up. Never waits; reads in the
    /// caller's thread (for tools and tests, not for tokio workers).
    pub fn try_next(&mut self, max: usize) -> Result<Option<Chunk>, LogError> {
        if self.inflight.is_some() {
            return Ok(None);
        }
        let mut c = lock(&self.cursor);
        let r = match c.ready.take() {
            Some(r) => r,
            None => c.try_pieces(max),
        };
        drop(c);
        Ok(r?.map(|p| join_pieces(self.deliver(p))))
    }
}

impl Cursor {
    /// [`try_next`](Self::try_next) as uncopied pieces (never an empty list).
    fn try_pieces(&mut self, max: usize) -> Result<Option<Vec<Chunk>>, LogError> {
        let max = max.max(1);
        let plan = self
            .shared
            .lock()
            .plan(self.epoch, self.cursor, self.hint)?;
        let Some(plan) = plan else {
            return Ok(None);
        };
        if self.file.as_ref().is_none_or(|(f, _)| *f != plan.seg_first) {
            let file = File::open(&plan.path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    LogError::Gone {
                        offset: self.cursor,
                    }
                } else {
                    io_err(&plan.path)(e)
                }
            })?;
            let previous = self.file.replace((plan.seg_first, file));
            // Moving on from an older (sealed) segment: its pages are not needed again soon.
            if let Some((_, old)) = previous.filter(|(f, _)| *f < plan.seg_first) {
                if !self.shared.cfg.keep_page_cache {
                    drop_page_cache(&old);
                }
            }
        }
        let chunk = self.read(&plan, max)?;
        Ok(Some(chunk))
    }

    fn read(&mut self, plan: &Plan, max: usize) -> Result<Vec<Chunk>, LogError> {
        let Some((_, file)) = self.file.as_ref() else {
            return Err(LogError::Gone {
                offset: self.cursor,
            });
        };
        let want = (max + HEADER_LEN).max(64 * 1024) as u64;
        let (mut pos, mut rec, mut cur) = (plan.pos, plan.rec, self.cursor);
        if let Some((.., e)) = self
            .failed
            .take()
            .filter(|f| (f.0, f.1, f.2) == (plan.seg_first, pos, rec))
        {
            tracing::error!(path = %plan.path.display(), offset = rec, error = %e, "read error in a log segment; its range is treated as unreadable");
            return Err(self.corrupt(plan, pos, rec, None));
        }
        let mut block = None;
        let mut parts: Vec<Chunk> = Vec::new();
        let mut got = 0usize;
        // A bad record ends the chunk; it is reported only if nothing good came before it
        // (the next call starts at it and reports it then).
        let mut problem: Option<Option<RecordHeader>> = None;
        // A failed read is served like a bad record: never bytes we could not check.
        let mut read_error: Option<std::io::Error> = None;
        while got < max && pos < plan.limit {
            let cached = self
                .cached
                .as_ref()
                .filter(|c| c.seg_first == plan.seg_first && c.rec == rec);
            let (h, payload) = match cached {
                Some(c) => (c.header, c.payload.clone()),
                None => {
                    let hdr = match fetch(
                        &mut self.blocks,
                        &mut block,
                        file,
                        plan,
                        pos,
                        HEADER_LEN as u64,
                        want,
                    ) {
                        Ok(h) => h,
                        Err(e) => {
                            read_error = Some(e);
                            break;
                        }
                    };
                    let h = hdr
                        .as_deref()
                        .and_then(record::decode_header)
                        .filter(|h| record::plausible(h.len) && h.first_offset == rec);
                    let Some(h) = h else {
                        problem = Some(None);
                        break;
                    };
                    if h.end_offset() <= cur {
                        pos += h.total_len();
                        rec = h.end_offset();
                        continue;
                    }
                    let whole = match fetch(
                        &mut self.blocks,
                        &mut block,
                        file,
                        plan,
                        pos,
                        h.total_len(),
                        want,
                    ) {
                        Ok(w) => w,
                        Err(e) => {
                            read_error = Some(e);
                            break;
                        }
                    };
                    let Some(whole) =
                        whole.filter(|w| matches!(record::decode(w), Decoded::Complete { .. }))
                    else {
                        problem = Some(Some(h));
                        break;
                    };
                    let payload = whole.slice(HEADER_LEN..);
                    self.cached = Some(Cached {
                        seg_first: plan.seg_first,
                        rec,
                        header: h,
                        payload: payload.clone(),
                    });
                    (h, payload)
                }
            };
            let skip = (cur - rec) as usize;
            let take = (payload.len() - skip).min(max - got);
            parts.push(Chunk {
                offset: cur,
                timestamp_us: h.timestamp_us,
                data: payload.slice(skip..skip + take),
            });
            got += take;
            cur += take as u64;
            if skip + take == payload.len() {
                pos += h.total_len();
                rec = h.end_offset();
            }
        }
        match (parts.is_empty(), &read_error) {
            (true, Some(e)) => {
                tracing::error!(path = %plan.path.display(), offset = rec, error = %e, "read error in a log segment; its range is treated as unreadable");
            }
            (false, Some(e)) => self.failed = Some((plan.seg_first, pos, rec, e.to_string())),
            _ => {}
        }
        if parts.is_empty() {
            // Either a bad record or a read error at the cursor, or no record holds the cursor.
            return Err(self.corrupt(plan, pos, rec, problem.flatten()));
        }
        self.cursor = cur;
        self.hint = Some((plan.seg_first, pos, rec));
        Ok(parts)
    }

    /// Record a corruption barrier for the bad record at (`pos`, `rec`) and build the error.
    fn corrupt(&mut self, plan: &Plan, pos: u64, rec: u64, hdr: Option<RecordHeader>) -> LogError {
        let mut barrier = plan.seg_end;
        let mut next_entry = None;
        if let (Some(h), Some((_, file))) = (hdr, self.file.as_ref()) {
            let next = pos + h.total_len();
            let mut nb = [0u8; HEADER_LEN];
            if next < plan.limit && read_at_most(file, &mut nb, next).ok() == Some(HEADER_LEN) {
                if let Some(n) = record::decode_header(&nb)
                    .filter(|n| record::plausible(n.len) && n.first_offset == h.end_offset())
                {
                    barrier = n.first_offset;
                    next_entry = Some(IndexEntry {
                        offset: n.first_offset,
                        pos: next,
                        ts: n.timestamp_us,
                    });
                }
            }
        }
        self.cached = None;
        self.hint = None;
        self.shared
            .lock()
            .note_corruption(plan.seg_first, rec, barrier, next_entry, &plan.path);
        LogError::Corrupt {
            offset: rec,
            path: plan.path.clone(),
        }
    }
}
