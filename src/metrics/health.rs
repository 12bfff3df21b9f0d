//! What the tasks report about the upstream and the log: the upstream's position as last
//! heard, how it last synced us, and the health flags behind `/healthz` and `/readyz`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use crate::log::Log;

/// How the upstream last synced this agent; shown in `/status` as `""`, `"partial"` or `"full"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum LastSync {
    None = 0,
    Partial = 1,
    Full = 2,
}

impl LastSync {
    pub fn as_str(self) -> &'static str {
        match self {
            LastSync::None => "",
            LastSync::Partial => "partial",
            LastSync::Full => "full",
        }
    }
}

impl std::fmt::Display for LastSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The upstream's position as last heard: its head offset and that byte's origin timestamp,
/// and when we last heard from it (µs since the epoch). 0 = never.
#[derive(Default)]
pub struct UpstreamView {
    pub head: AtomicU64,
    pub head_ts_us: AtomicU64,
    pub heard_us: AtomicU64,
    /// A [`LastSync`] as its `u8`.
    pub last_sync: AtomicU8,
}

impl UpstreamView {
    pub fn synced(&self, full: bool) {
        let s = if full {
            LastSync::Full
        } else {
            LastSync::Partial
        };
        self.last_sync.store(s as u8, Ordering::Relaxed);
    }

    pub fn last_sync(&self) -> LastSync {
        match self.last_sync.load(Ordering::Relaxed) {
            1 => LastSync::Partial,
            2 => LastSync::Full,
            _ => LastSync::None,
        }
    }

    /// The upstream's head as known here (at least our own) and our lag behind it: bytes not
    /// durable here, and seconds since the oldest of them was written at the origin.
    pub fn lag(&self, log: &Log, s: &crate::log::LogStatus, now: u64) -> UpstreamLag {
        let head = self.head.load(Ordering::Relaxed).max(s.head);
        let lag_us = if s.durable >= head || s.history.is_empty() {
            0
        } else {
            // The oldest byte not durable here: held but not yet fsynced (exact timestamp), or
            // not yet received (bounded by the upstream head's timestamp).
            let ts = log
                .timestamp_at(s.durable + 1)
                .unwrap_or_else(|| self.head_ts_us.load(Ordering::Relaxed));
            if ts == 0 {
                0
            } else {
                now.saturating_sub(ts)
            }
        };
        UpstreamLag {
            head,
            bytes: head.saturating_sub(s.durable),
            seconds: lag_us as f64 / 1e6,
        }
    }

    /// Forgets the previous upstream's position (after a re-point to another upstream).
    pub fn forget(&self) {
        self.head.store(0, Ordering::Relaxed);
        self.head_ts_us.store(0, Ordering::Relaxed);
        self.heard_us.store(0, Ordering::Relaxed);
    }

    pub fn heard(&self, head: u64, head_ts_us: u64) {
        self.head.fetch_max(head, Ordering::Relaxed);
        self.head_ts_us.fetch_max(head_ts_us, Ordering::Relaxed);
        self.heard_us
            .store(crate::clock::now_us(), Ordering::Relaxed);
    }
}

/// The upstream's head and this node's lag behind it, from [`UpstreamView::lag`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpstreamLag {
    pub head: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// Health flags behind `/healthz` and `/readyz`.
#[derive(Default)]
pub struct Health {
    pub upstream_up: AtomicBool,
    pub log_writable: AtomicBool,
}

impl Health {
    pub fn new() -> Arc<Health> {
        let h = Health::default();
        h.log_writable.store(true, Ordering::Relaxed);
        Arc::new(h)
    }

    /// None when ready, else the reason.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if !self.upstream_up.load(Ordering::Relaxed) {
            Some("upstream link is down")
        } else if !self.log_writable.load(Ordering::Relaxed) {
            Some("log is not writable")
        } else {
            None
        }
    }
}
