//! The durable replication log: segments of CRC-framed records, RDB snapshots, the replid
//! history, group-commit durability, recovery, retention, and tailing readers.
//!
//! On-disk layout under `LogConfig::dir`:
//! `LOCK`, `state.json`, `segments/<epoch:08>-<first_offset:020>.seg`,
//! `snapshots/<epoch:08>-<offset:020>.{rdb,json}`.
//!
//! Offsets are Redis replication offsets: a snapshot at O covers bytes ≤ O, `head` is the
//! offset of the last byte held, `PSYNC <id> head+1` is a valid empty continuation.
//!
//! Lifetimes: the directory lock and the sync thread live as long as any [`Log`] clone or
//! [`LogReader`] exists; dropping the last one runs a final fsync pass and stops the thread.

mod blocks;
mod fsutil;
mod io;
mod reader;
pub mod record;
mod recovery;
mod retention;
mod segment;
mod snapshot;
mod state;
mod sync;
mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_lifecycle;

use std::collections::VecDeque;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub(crate) use fsutil::write_atomic;
pub use io::{blocking, AppendPipe, AsyncSnapshot, PooledFile, READER_THREAD, WRITER_THREAD};
pub use reader::{join_pieces, Chunk, LogReader};
pub use snapshot::SnapshotWriter;

use segment::Segment;
use state::State;
use sync::SyncCore;

/// When segment bytes are fsynced (Redis's `appendfsync` words).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    Always,
    EverySec,
    No,
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub max_bytes: u64,
    pub max_age: Duration,
    pub fsync: FsyncPolicy,
    pub snapshot_after_bytes: u64,
    /// Keep sealed segments in the page cache instead of dropping them once written back.
    pub keep_page_cache: bool,
}

impl LogConfig {
    /// The log in `dir`, with the budget, segment size, fsync policy and snapshot threshold of
    /// the `[log]` section (the node's log and every lane's log are built here).
    pub fn new(dir: PathBuf, s: &crate::config::LogSettings) -> LogConfig {
        LogConfig {
            dir,
            segment_bytes: s.segment_bytes,
            max_bytes: s.max_bytes,
            max_age: s.max_age,
            fsync: s.fsync,
            snapshot_after_bytes: s.snapshot_after,
            keep_page_cache: s.keep_page_cache,
        }
    }
}

/// One replid switch: `replid` names the stream from offset `start` on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub replid: String,
    pub start: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub epoch: u64,
    pub replid: String,
    pub offset: u64,
    pub rdb_version: u32,
    pub size: u64,
    pub crc_ok: Option<bool>,
    pub created_unix: u64,
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FullReason {
    FirstSync,
    NoHistory,
    OffsetOutOfRange,
    Corruption,
    NewEpoch,
}

impl FullReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            FullReason::FirstSync => "first_sync",
            FullReason::NoHistory => "no_history",
            FullReason::OffsetOutOfRange => "offset_out_of_range",
            FullReason::Corruption => "corruption",
            FullReason::NewEpoch => "new_epoch",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PsyncDecision {
    /// Partial sync; `replid` is the current replid.
    Continue {
        replid: String,
    },
    Full {
        reason: FullReason,
    },
}

#[derive(Clone, Debug)]
pub struct LogStatus {
    pub epoch: u64,
    pub history: Vec<HistoryEntry>,
    pub first_valid: u64,
    pub head: u64,
    pub durable: u64,
    /// Segments + snapshots.
    pub disk_bytes: u64,
    pub segment_count: usize,
    pub newest_snapshot: Option<SnapshotMeta>,
    pub corruptions_total: u64,
    pub head_timestamp_us: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another georelay agent holds the log directory {path} (lock file LOCK)")]
    Locked { path: PathBuf },
    #[error("corrupt log record at offset {offset} in {path}; that range will not be served")]
    Corrupt { offset: u64, path: PathBuf },
    #[error("offset {offset} is no longer in the log (retention, corruption or a new epoch)")]
    Gone { offset: u64 },
    #[error("the log has no epoch yet (no snapshot taken)")]
    NoEpoch,
    #[error("bad log state in {path}: {detail}")]
    BadState { path: PathBuf, detail: String },
    #[error("snapshot replid is not valid at the snapshot offset in the current replid history")]
    ReplidInvalid,
    #[error("the log's file thread stopped (a job panicked, or the log is closing)")]
    Stopped,
}

/// How many recent (offset, timestamp) record starts are kept for exact lag lookups.
const RECENT_RECORDS: usize = 4096;

/// Mutable log state; guarded by `Shared::inner`, held only briefly.
pub(crate) struct Inner {
    _lock: File,
    root: PathBuf,
    seg_dir: PathBuf,
    snap_dir: PathBuf,
    state: State,
    /// Sorted by first offset; the last one is the active segment.
    segments: Vec<Segment>,
    /// Append handle of `segments.last()`, opened lazily.
    active: Option<Arc<File>>,
    /// Snapshots of the current epoch, sorted by offset.
    snapshots: Vec<SnapshotMeta>,
    first_valid: u64,
    /// `first_valid` as last raised by corruption (0 = never).
    corrupt_floor: u64,
    head: u64,
    head_ts: u64,
    corruptions_total: u64,
    /// Start (offset, ts) of recent records, oldest first.
    recent: VecDeque<(u64, u64)>,
    /// The active segment holds corrupt bytes at its end: start a new one on the next append.
    force_rotate: bool,
}

pub(crate) struct Shared {
    cfg: LogConfig,
    inner: Mutex<Inner>,
    head_tx: watch::Sender<u64>,
    epoch_tx: watch::Sender<u64>,
    sync: Arc<SyncCore>,
    /// Runs the log's mutations, in order, off the tokio workers.
    writer: io::Worker,
    /// Tests: runs right before a full segment's seal (outside the mutex).
    #[cfg(test)]
    seal_hook: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.sync.shutdown();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called before a segment is sealed at rotation, without the mutex held.
    fn before_seal(&self) {
        #[cfg(test)]
        if let Some(hook) = self
            .seal_hook
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            hook();
        }
    }
}

/// Handle to the replication log; cheap to clone.
#[derive(Clone)]
pub struct Log {
    shared: Arc<Shared>,
}

impl Inner {
    fn range(&self) -> state::Range {
        state::Range {
            first_valid: self.first_valid,
            head: self.head,
            corrupt_floor: self.corrupt_floor,
        }
    }

    fn segment_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    fn timestamp_at(&self, offset: u64) -> Option<u64> {
        if !self.state.has_epoch() || offset < self.first_valid || offset > self.head {
            return None;
        }
        if let Some(&(o, _)) = self.recent.front() {
            if offset >= o {
                let i = self.recent.partition_point(|&(o, _)| o <= offset);
                return self.recent.get(i.checked_sub(1)?).map(|&(_, ts)| ts);
            }
        }
        let i = self.segments.partition_point(|s| s.first <= offset);
        let seg = self.segments.get(i.checked_sub(1)?)?;
        seg.contains(offset).then(|| seg.locate(offset).ts)
    }
}

impl Log {
    /// Open (or create) the log in `cfg.dir`: take the lock, recover, start the sync thread.
    pub fn open(cfg: LogConfig) -> Result<Log, LogError> {
        let inner = recovery::recover(&cfg)?;
        let sync = SyncCore::new(cfg.fsync, inner.head);
        sync.spawn().map_err(fsutil::io_err(&cfg.dir))?;
        let writer = io::Worker::spawn(io::WRITER_THREAD).map_err(fsutil::io_err(&cfg.dir))?;
        let (head_tx, _) = watch::channel(inner.head);
        let (epoch_tx, _) = watch::channel(inner.state.epoch);
        Ok(Log {
            shared: Arc::new(Shared {
                cfg,
                inner: Mutex::new(inner),
                head_tx,
                epoch_tx,
                sync,
                writer,
                #[cfg(test)]
                seal_hook: Mutex::new(None),
            }),
        })
    }

    pub fn status(&self) -> LogStatus {
        let durable = *self.shared.sync.durable_tx.borrow();
        let g = self.shared.lock();
        let newest_snapshot = g.newest_usable_snapshot().cloned();
        LogStatus {
            epoch: g.state.epoch,
            history: g.state.history.clone(),
            first_valid: g.first_valid,
            head: g.head,
            durable,
            disk_bytes: g.segment_bytes() + g.snapshots.iter().map(|s| s.size).sum::<u64>(),
            segment_count: g.segments.len(),
            newest_snapshot,
            corruptions_total: g.corruptions_total,
            head_timestamp_us: g.head_ts,
        }
    }

    /// Registers a callback that receives the duration of every fsync pass (first call wins).
    pub fn set_fsync_observer(&self, f: impl Fn(Duration) + Send + Sync + 'static) {
        let _ = self.shared.sync.observer.set(Box::new(f));
    }

    /// The configured retention budget for segments.
    pub fn max_bytes(&self) -> u64 {
        self.shared.cfg.max_bytes
    }

    /// The epoch number and its replid history (cheap; for link servers that forward switches).
    pub fn history(&self) -> (u64, Vec<HistoryEntry>) {
        let g = self.shared.lock();
        (g.state.epoch, g.state.history.clone())
    }

    /// (current replid, head), or `None` before the first epoch.
    pub fn current(&self) -> Option<(String, u64)> {
        let g = self.shared.lock();
        let cur = g.state.history.last().filter(|_| g.state.has_epoch())?;
        Some((cur.replid.clone(), g.head))
    }

    /// Origin timestamp of the record containing `offset`, if held. Exact for recent records,
    /// otherwise the timestamp of the nearest index point at or before it.
    pub fn timestamp_at(&self, offset: u64) -> Option<u64> {
        self.shared.lock().timestamp_at(offset)
    }

    /// Ask the sync thread for an fsync pass now (whatever the policy).
    pub fn request_sync(&self) {
        self.shared.sync.request();
    }

    /// Forces a group commit now (whatever the policy) and waits for it: returns the durable
    /// offset, which covers every byte appended before the call. For `REPLCONF GETACK` and
    /// `WAIT`-style answers that must not wait for the periodic fsync. Returns early (with the
    /// durable offset then) if a new epoch starts meanwhile.
    pub async fn sync_durable(&self) -> u64 {
        let (target, epoch) = {
            let g = self.shared.lock();
            (g.head, g.state.epoch)
        };
        let mut durable = self.subscribe_durable();
        let mut epochs = self.subscribe_epoch();
        if *durable.borrow_and_update() >= target {
            return target.max(*durable.borrow());
        }
        self.shared.sync.request();
        loop {
            tokio::select! {
                r = durable.changed() => if r.is_err() { break },
                r = epochs.changed() => if r.is_err() || *epochs.borrow_and_update() != epoch { break },
            }
            if *durable.borrow_and_update() >= target {
                break;
            }
        }
        let d = *durable.borrow();
        d
    }

    pub fn subscribe_head(&self) -> watch::Receiver<u64> {
        self.shared.head_tx.subscribe()
    }

    pub fn subscribe_durable(&self) -> watch::Receiver<u64> {
        self.shared.sync.durable_tx.subscribe()
    }

    /// Value = epoch number; also notified (same value) on a replid switch.
    pub fn subscribe_epoch(&self) -> watch::Receiver<u64> {
        self.shared.epoch_tx.subscribe()
    }

    /// Final fsync of everything written (on the writer thread, after what was asked before;
    /// this thread waits); stops the sync thread.
    pub fn close(&self) -> Result<(), LogError> {
        let sync = Arc::clone(&self.shared.sync);
        if self.on_writer_blocking(move |_| sync.sync_now()).is_err() {
            self.shared.sync.sync_now();
        }
        self.shared.sync.shutdown();
        Ok(())
    }

    /// Partial or full sync for `PSYNC <replid> <offset>`.
    pub fn decide(&self, replid: &str, offset: u64) -> PsyncDecision {
        let g = self.shared.lock();
        state::decide(&g.state, g.range(), replid, offset)
    }

    /// Newest snapshot of the current epoch whose following log is fully held.
    pub fn snapshot_for_full_sync(&self) -> Option<SnapshotMeta> {
        self.shared.lock().newest_usable_snapshot().cloned()
    }
}
