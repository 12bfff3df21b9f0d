//! Retention and snapshot bookkeeping: which snapshot is usable for a full sync, deleting old
//! segments by size and age without breaking it, and when a fresh snapshot is needed.

use std::time::Duration;

use super::fsutil::remove_file;
use super::snapshot;
use super::{Inner, LogConfig, LogError, SnapshotMeta};

fn as_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Inner {
    /// A snapshot at O is usable when all log from O+1 to head is held.
    fn usable(&self, s: &SnapshotMeta) -> bool {
        s.epoch == self.state.epoch && s.offset + 1 >= self.first_valid && s.offset <= self.head
    }

    pub(crate) fn newest_usable_snapshot(&self) -> Option<&SnapshotMeta> {
        self.snapshots.iter().rev().find(|s| self.usable(s))
    }

    /// Delete segments and snapshots that retention allows to go. `now_us` = wall clock.
    pub(crate) fn maintain(&mut self, cfg: &LogConfig, now_us: u64) -> Result<(), LogError> {
        if !self.state.has_epoch() {
            return Ok(());
        }
        // Offsets ≥ keep_from are needed by a full sync from the newest usable snapshot.
        let keep_from = self.newest_usable_snapshot().map(|s| s.offset + 1);
        let max_age = as_us(cfg.max_age);
        while self.segments.len() > 1 {
            let seg = &self.segments[0];
            let unusable = seg.end <= self.first_valid;
            let too_big = self.segment_bytes() > cfg.max_bytes;
            let too_old = seg.last_ts > 0 && now_us.saturating_sub(seg.last_ts) > max_age;
            if !(unusable || too_big || too_old) {
                break;
            }
            if !unusable && keep_from.is_some_and(|k| seg.end > k) {
                break;
            }
            let why = if unusable {
                "below first valid offset"
            } else if too_big {
                "max_bytes"
            } else {
                "max_age"
            };
            tracing::info!(path = %seg.path.display(), first = seg.first, end = seg.end, reason = why, "deleting segment");
            remove_file(&seg.path)?;
            let seg = self.segments.remove(0);
            self.first_valid = self.first_valid.max(seg.end);
        }
        // Keep the newest usable snapshot and any newer (pending) ones; older ones are useless.
        let newest = self.newest_usable_snapshot().map(|s| s.offset);
        let (keep, drop): (Vec<_>, Vec<_>) = std::mem::take(&mut self.snapshots)
            .into_iter()
            .partition(|s| match newest {
                Some(n) => s.offset >= n,
                None => s.offset + 1 >= self.first_valid,
            });
        self.snapshots = keep;
        for s in drop {
            tracing::info!(path = %s.path.display(), offset = s.offset, "deleting superseded snapshot");
            snapshot::delete(&self.snap_dir, &s)?;
        }
        Ok(())
    }

    /// True when the caller should fetch a fresh snapshot.
    pub(crate) fn needs_snapshot(&self, cfg: &LogConfig) -> bool {
        if !self.state.has_epoch() {
            return false;
        }
        // A pending snapshot (offset ahead of head) counts: it becomes usable soon.
        let Some(s) = self
            .snapshots
            .iter()
            .rev()
            .find(|s| s.offset + 1 >= self.first_valid)
        else {
            return true;
        };
        if self.head.saturating_sub(s.offset) > cfg.snapshot_after_bytes {
            return true;
        }
        let pinned = self.segments.len() > 1 && self.segments[0].end > s.offset + 1;
        pinned && self.segment_bytes() > cfg.max_bytes
    }
}
