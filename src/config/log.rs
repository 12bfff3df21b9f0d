//! The `[log]` section: the durable log's budget, segment size, fsync policy and snapshots.

use std::time::Duration;

use serde::Deserialize;

use super::problems::Problems;
use crate::log::FsyncPolicy;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) max_bytes: Option<String>,
    pub(super) max_age: Option<String>,
    pub(super) segment_bytes: Option<String>,
    pub(super) fsync: Option<String>,
    pub(super) snapshot_after: Option<String>,
    pub(super) keep_page_cache: Option<bool>,
}

/// The `[log]` section, in parsed units.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub max_bytes: u64,
    pub max_age: Duration,
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    pub snapshot_after: u64,
    /// Keep sealed segments in the page cache (default: drop them once written back).
    pub keep_page_cache: bool,
}

pub(super) fn validate_log(raw: RawLog, problems: &mut Problems) -> LogSettings {
    let max_bytes = problems.size("log.max_bytes", raw.max_bytes.as_deref(), "10GiB");
    let segment_bytes = problems.size("log.segment_bytes", raw.segment_bytes.as_deref(), "64MiB");
    let snapshot_after = problems.size("log.snapshot_after", raw.snapshot_after.as_deref(), "0");
    let max_age = problems.duration("log.max_age", raw.max_age.as_deref(), "7d");
    if segment_bytes < 4096 {
        problems.bad("log.segment_bytes", "must be at least 4KiB");
    }
    if max_bytes < segment_bytes.saturating_mul(2) {
        problems.bad("log.max_bytes", "must be at least twice log.segment_bytes");
    }
    // Refresh the snapshot once the log since it exceeds half the budget, by default.
    let snapshot_after = if snapshot_after == 0 {
        max_bytes / 2
    } else {
        snapshot_after
    };
    let fsync = match raw.fsync.as_deref().unwrap_or("everysec") {
        "always" => FsyncPolicy::Always,
        "everysec" => FsyncPolicy::EverySec,
        "no" => FsyncPolicy::No,
        other => {
            problems.bad(
                "log.fsync",
                format!("{other:?} must be always, everysec or no"),
            );
            FsyncPolicy::EverySec
        }
    };
    LogSettings {
        max_bytes,
        max_age,
        segment_bytes,
        fsync,
        snapshot_after,
        keep_page_cache: raw.keep_page_cache.unwrap_or(false),
    }
}
