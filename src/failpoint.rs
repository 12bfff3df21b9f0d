//! Fault injection for tests: `GEORELAY_FAILPOINTS="name[@n[:k]],…"` makes [`hit`] return true
//! for `name` from its n-th call on (n defaults to 1), k times (default: for ever). Unset
//! (production), every check is one atomic load of an empty list.
//!
//! Points: `write` (segment append), `fsync` (group commit), `rename` (state.json, snapshot
//! files), `read` (serving from a segment), `upstream_read` (the Redis upstream stream),
//! `agent_send` (log frames to a downstream agent), `apply_load_slow` (50 ms before each
//! full-sync batch an applier writes, so tests can kill it mid-load).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// First call that fires, and how many calls fire from there (`u64::MAX`: all).
static POINTS: OnceLock<HashMap<String, (u64, u64)>> = OnceLock::new();
static CALLS: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);

fn points() -> &'static HashMap<String, (u64, u64)> {
    POINTS.get_or_init(|| parse(&std::env::var("GEORELAY_FAILPOINTS").unwrap_or_default()))
}

fn parse(spec: &str) -> HashMap<String, (u64, u64)> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (name, when) = s.split_once('@').unwrap_or((s, "1"));
            let (n, k) = when.split_once(':').unwrap_or((when, ""));
            let k = if k.is_empty() {
                u64::MAX
            } else {
                k.parse().unwrap_or(1)
            };
            (name.to_string(), (n.parse().unwrap_or(1).max(1), k))
        })
        .collect()
}

/// An I/O error for a fired failpoint, naming it.
pub fn io_error(name: &str) -> std::io::Error {
    std::io::Error::other(format!("injected by failpoint {name}"))
}

/// True when the failpoint `name` is armed and due.
pub fn hit(name: &str) -> bool {
    let pts = points();
    let Some(&(from, times)) = pts.get(name) else {
        return false;
    };
    let mut calls = CALLS.lock().unwrap_or_else(|p| p.into_inner());
    let n = calls
        .get_or_insert_with(HashMap::new)
        .entry(name.to_string())
        .or_insert(0);
    *n += 1;
    if *n >= from && *n - from < times {
        tracing::warn!(failpoint = name, call = *n, "failpoint triggered");
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn spec_forms() {
        let p = parse("fsync@300, write@5:2,read,bad@x:y");
        assert_eq!(p["fsync"], (300, u64::MAX));
        assert_eq!(p["write"], (5, 2));
        assert_eq!(p["read"], (1, u64::MAX));
        assert_eq!(p["bad"], (1, 1));
        assert!(parse("").is_empty());
    }
}
