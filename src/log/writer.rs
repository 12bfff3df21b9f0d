//! The writer side of [`Log`]: appending records (with rotation), snapshots, new epochs,
//! replid switches, retention entry points.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::fsutil::{drop_page_cache, now_us, remove_file, rename, sync_dir};
use super::record::MAX_APPEND;
use super::segment::Segment;
use super::snapshot::{self, SnapshotWriter};
use super::state::replid_valid_at;
use super::{
    FsyncPolicy, HistoryEntry, Inner, Log, LogConfig, LogError, SnapshotMeta, RECENT_RECORDS,
};

/// An active segment sealed (fsynced, page cache dropped) outside the log mutex: the file and
/// its size when sealed. [`Inner::ensure_active`] skips the seal if nothing changed since.
pub(crate) struct Sealed {
    file: Arc<File>,
    size: u64,
}

impl Inner {
    /// True when the next record (at `head+1`) needs a new segment.
    fn needs_rotation(&self, cfg: &LogConfig) -> bool {
        let next = self.head + 1;
        match self.segments.last() {
            None => true,
            // An empty segment starting at `next` is reused (its name is taken).
            Some(s) if s.size == 0 && s.first == next => false,
            Some(s) => self.force_rotate || s.end != next || s.size >= cfg.segment_bytes,
        }
    }

    /// The active file to seal before the next record, if the next record rotates.
    fn to_seal(&self, cfg: &LogConfig) -> Option<(Arc<File>, PathBuf, u64)> {
        if !self.needs_rotation(cfg) {
            return None;
        }
        let (file, seg) = (self.active.as_ref()?, self.segments.last()?);
        Some((Arc::clone(file), seg.path.clone(), seg.size))
    }

    /// Make sure an active segment that can take a record at `head+1` exists and is open.
    /// Returns true if a new segment was created. The old segment is sealed first, so a crash
    /// cannot leave a hole before the new one — unless `sealed` says it already was, with
    /// nothing written to it since.
    fn ensure_active(
        &mut self,
        cfg: &LogConfig,
        sealed: Option<&Sealed>,
    ) -> Result<bool, LogError> {
        let next = self.head + 1;
        if self.needs_rotation(cfg) {
            let sync = cfg.fsync != FsyncPolicy::No;
            if let (Some(old), Some(seg)) = (self.active.as_ref(), self.segments.last()) {
                let done = sealed.is_some_and(|s| Arc::ptr_eq(&s.file, old) && s.size == seg.size);
                if !done {
                    seal(old, &seg.path, sync, cfg.keep_page_cache);
                }
            }
            let (seg, file) = Segment::create(&self.seg_dir, self.state.epoch, next, sync)?;
            tracing::debug!(path = %seg.path.display(), first = next, "new segment");
            self.segments.push(seg);
            self.active = Some(Arc::new(file));
            self.force_rotate = false;
            return Ok(true);
        }
        if self.active.is_none() {
            if let Some(s) = self.segments.last() {
                self.active = Some(Arc::new(s.open_for_append()?));
            }
        }
        Ok(false)
    }

    /// Move a finished snapshot's files to the name for (`epoch`, its offset).
    fn adopt_snapshot(&self, snap: &SnapshotMeta, epoch: u64) -> Result<SnapshotMeta, LogError> {
        let mut meta = snap.clone();
        meta.epoch = epoch;
        meta.path = self
            .snap_dir
            .join(format!("{}.rdb", snapshot::stem(epoch, snap.offset)));
        if meta.path != snap.path {
            rename(&snap.path, &meta.path)?;
            let old_json = self
                .snap_dir
                .join(format!("{}.json", snapshot::stem(snap.epoch, snap.offset)));
            remove_file(&old_json)?;
        }
        snapshot::write_meta(&self.snap_dir, &meta)?;
        Ok(meta)
    }
}

/// Seals a segment that is full: fsync (by policy; a failure is fatal) and, unless asked to
/// keep it, drop it from the page cache — readers that are caught up read the new segment and
/// the sealed one is read again only by a lagging reader, so the page cache (counted in a
/// container's memory) does not grow with the log.
fn seal(file: &File, path: &Path, sync: bool, keep_page_cache: bool) {
    if sync {
        if let Err(e) = file.sync_data() {
            super::sync::fatal(path, &e);
        }
    }
    if !keep_page_cache {
        drop_page_cache(file);
    }
}

impl Log {
    /// Append `data` as one record at offset head+1 (split into several records if larger
    /// than [`MAX_APPEND`]). Written immediately; fsynced by the group-commit policy.
    pub fn append(&self, data: Bytes, timestamp_us: u64) -> Result<(), LogError> {
        if data.is_empty() {
            return Ok(());
        }
        let cfg = &self.shared.cfg;
        let mut g = self.shared.lock();
        if !g.state.has_epoch() {
            return Err(LogError::NoEpoch);
        }
        let mut rotated = false;
        let mut rest = data;
        while !rest.is_empty() {
            let piece = rest.split_to(rest.len().min(MAX_APPEND));
            // The seal's fsync runs without the mutex, so readers, `status` and the ACK path
            // do not wait for the disk; `ensure_active` re-checks that nothing moved meanwhile.
            let mut sealed = None;
            if let Some((file, path, size)) = g.to_seal(cfg) {
                drop(g);
                self.shared.before_seal();
                seal(
                    &file,
                    &path,
                    cfg.fsync != FsyncPolicy::No,
                    cfg.keep_page_cache,
                );
                sealed = Some(Sealed { file, size });
                g = self.shared.lock();
                if !g.state.has_epoch() {
                    return Err(LogError::NoEpoch);
                }
            }
            rotated |= g.ensure_active(cfg, sealed.as_ref())?;
            let offset = g.head + 1;
            let Some(file) = g.active.clone() else {
                return Err(LogError::NoEpoch);
            };
            let g2 = &mut *g;
            let Some(seg) = g2.segments.last_mut() else {
                return Err(LogError::NoEpoch);
            };
            seg.append(&file, &piece, offset, timestamp_us)?;
            let path = seg.path.clone();
            g2.head = offset + piece.len() as u64 - 1;
            g2.head_ts = timestamp_us;
            if g2.recent.len() >= RECENT_RECORDS {
                g2.recent.pop_front();
            }
            g2.recent.push_back((offset, timestamp_us));
            self.shared.sync.note_write(&file, &path, g2.head);
        }
        self.shared.head_tx.send_replace(g.head);
        if rotated {
            if let Err(e) = g.maintain(cfg, now_us()) {
                tracing::warn!(error = %e, "retention after segment rotation failed");
            }
        }
        Ok(())
    }

    /// Start receiving an RDB into a temp file under `snapshots/`.
    pub fn begin_snapshot(&self) -> Result<SnapshotWriter, LogError> {
        let g = self.shared.lock();
        SnapshotWriter::create(&g.snap_dir, g.state.epoch)
    }

    /// Begin a new epoch from `snap`: epoch+1, history = [(snap.replid, snap.offset+1)],
    /// head = snap.offset. Durable (state.json) before the old epoch's files are deleted.
    /// Readers of the old epoch get `Gone`; epoch and head watchers are notified.
    pub fn start_epoch(&self, snap: SnapshotMeta) -> Result<(), LogError> {
        let mut g = self.shared.lock();
        let new_state = g.state.next_epoch(&snap.replid, snap.offset);
        let meta = g.adopt_snapshot(&snap, new_state.epoch)?;
        new_state.save(&g.root)?; // commit point
        tracing::info!(epoch = new_state.epoch, replid = %snap.replid, offset = snap.offset, "new log epoch");
        g.active = None;
        for seg in std::mem::take(&mut g.segments) {
            if let Err(e) = remove_file(&seg.path) {
                tracing::warn!(error = %e, "could not delete segment of the old epoch");
            }
        }
        for s in std::mem::take(&mut g.snapshots) {
            if let Err(e) = snapshot::delete(&g.snap_dir, &s) {
                tracing::warn!(error = %e, "could not delete snapshot of the old epoch");
            }
        }
        for d in [&g.seg_dir, &g.snap_dir] {
            if let Err(e) = sync_dir(d) {
                tracing::warn!(error = %e, "directory fsync after epoch clean-up failed");
            }
        }
        g.state = new_state;
        g.snapshots = vec![meta];
        g.first_valid = snap.offset + 1;
        g.corrupt_floor = 0;
        g.head = snap.offset;
        g.head_ts = snap.created_unix.saturating_mul(1_000_000);
        g.recent.clear();
        g.force_rotate = false;
        self.shared.sync.reset(snap.offset);
        self.shared.head_tx.send_replace(g.head);
        self.shared.epoch_tx.send_replace(g.state.epoch);
        Ok(())
    }

    /// Register a refreshed snapshot of the current epoch. Fails with `ReplidInvalid` if its
    /// replid does not name the stream at its offset, `Gone` if the log after it is no longer
    /// held; a rejected snapshot's files are deleted.
    pub fn add_snapshot(&self, snap: SnapshotMeta) -> Result<(), LogError> {
        let cfg = &self.shared.cfg;
        let mut g = self.shared.lock();
        if !g.state.has_epoch() {
            return Err(LogError::NoEpoch);
        }
        let next = snap.offset + 1;
        let reject = if !replid_valid_at(&g.state.history, &snap.replid, next) {
            tracing::warn!(replid = %snap.replid, offset = snap.offset, "snapshot replid not valid at its offset");
            Some(LogError::ReplidInvalid)
        } else if next < g.first_valid || next < g.state.epoch_start() {
            Some(LogError::Gone { offset: next })
        } else {
            None
        };
        if let Some(err) = reject {
            snapshot::delete(&g.snap_dir, &snap)?;
            return Err(err);
        }
        let epoch = g.state.epoch;
        let meta = g.adopt_snapshot(&snap, epoch)?;
        g.snapshots.retain(|s| s.offset != meta.offset);
        let i = g.snapshots.partition_point(|s| s.offset < meta.offset);
        g.snapshots.insert(i, meta);
        g.maintain(cfg, now_us())
    }

    /// Record `+CONTINUE <new_replid>`: history gets (new, head+1), durably. Notifies epoch
    /// watchers (same epoch value) so servers can disconnect replicas.
    pub fn switch_replid(&self, new_replid: &str) -> Result<(), LogError> {
        let mut g = self.shared.lock();
        if !g.state.has_epoch() {
            return Err(LogError::NoEpoch);
        }
        if g.state
            .history
            .last()
            .is_some_and(|h| h.replid.eq_ignore_ascii_case(new_replid))
        {
            return Ok(());
        }
        let mut st = g.state.clone();
        st.history.push(HistoryEntry {
            replid: new_replid.to_string(),
            start: g.head + 1,
        });
        st.save(&g.root)?;
        tracing::info!(
            replid = new_replid,
            start = g.head + 1,
            "replid switch recorded"
        );
        g.state = st;
        self.shared.epoch_tx.send_replace(g.state.epoch);
        Ok(())
    }

    /// Retention: delete what size/age limits allow without breaking the newest snapshot.
    /// Runs on the log's writer thread (the calling thread waits), so its deletes never run
    /// on a tokio thread; async callers use [`Log::maintain_async`].
    pub fn maintain(&self) -> Result<(), LogError> {
        self.on_writer_blocking(|l| l.maintain_here())?
    }

    /// Retention in the calling thread.
    pub(crate) fn maintain_here(&self) -> Result<(), LogError> {
        self.shared.lock().maintain(&self.shared.cfg, now_us())
    }

    /// True when a fresh snapshot should be fetched.
    pub fn needs_snapshot(&self) -> bool {
        self.shared.lock().needs_snapshot(&self.shared.cfg)
    }
}
