//! Fault injection for tests: `GEORELAY_FAILPOINTS="name[@n],…"` makes [`hit`] return true for
//! `name` from its n-th call on (n defaults to 1). Unset (production), every check is one
//! atomic load of an empty list.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

static POINTS: OnceLock<HashMap<String, u64>> = OnceLock::new();
static CALLS: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);

fn points() -> &'static HashMap<String, u64> {
    POINTS.get_or_init(|| {
        std::env::var("GEORELAY_FAILPOINTS")
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| match s.trim().split_once('@') {
                Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1)),
                None => (s.trim().to_string(), 1),
            })
            .collect()
    })
}

/// True when the failpoint `name` is armed and due.
pub fn hit(name: &str) -> bool {
    let pts = points();
    let Some(&from) = pts.get(name) else {
        return false;
    };
    let mut calls = CALLS.lock().unwrap_or_else(|p| p.into_inner());
    let n = calls
        .get_or_insert_with(HashMap::new)
        .entry(name.to_string())
        .or_insert(0);
    *n += 1;
    if *n >= from {
        tracing::warn!(failpoint = name, call = *n, "failpoint triggered");
        true
    } else {
        false
    }
}
