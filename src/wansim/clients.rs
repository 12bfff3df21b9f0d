//! The client table: one entry (upstream socket + reader) per client source address, bounded in
//! size, with idle expiry. Activity is an atomic "last seen" shared with the entry's reader.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Most clients at once; packets from further clients are dropped and counted.
pub(crate) const MAX_CLIENTS: usize = 256;
/// A mapping with no traffic either way for this long is closed.
pub(crate) const IDLE_MS: u64 = 60_000;

/// Client source address -> entry, with the last activity in milliseconds since start.
pub(crate) struct ClientTable<E> {
    map: HashMap<SocketAddr, (E, Arc<AtomicU64>)>,
    max: usize,
}

impl<E> ClientTable<E> {
    pub(crate) fn new(max: usize) -> Self {
        ClientTable {
            map: HashMap::new(),
            max,
        }
    }

    /// The entry for `addr`, marking it active at `now_ms`.
    pub(crate) fn touch(&mut self, addr: &SocketAddr, now_ms: u64) -> Option<&E> {
        let (entry, seen) = self.map.get(addr)?;
        seen.store(now_ms, Relaxed);
        Some(entry)
    }

    pub(crate) fn is_full(&self) -> bool {
        self.map.len() >= self.max
    }

    /// Adds an entry whose activity clock is `seen` (shared with whoever else sees traffic).
    /// Returns `false`, dropping `entry`, if the table is full.
    pub(crate) fn insert(&mut self, addr: SocketAddr, entry: E, seen: Arc<AtomicU64>) -> bool {
        if self.is_full() && !self.map.contains_key(&addr) {
            return false;
        }
        self.map.insert(addr, (entry, seen));
        true
    }

    /// Removes entries idle for `idle_ms` or more at `now_ms`; returns how many.
    pub(crate) fn expire(&mut self, now_ms: u64, idle_ms: u64) -> usize {
        let before = self.map.len();
        self.map
            .retain(|_, (_, seen)| now_ms.saturating_sub(seen.load(Relaxed)) < idle_ms);
        before - self.map.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn bounded_and_expiring() {
        let mut t = ClientTable::new(2);
        let seen_a = Arc::new(AtomicU64::new(0));
        assert!(t.insert(addr(1), "a", seen_a.clone()));
        assert!(t.insert(addr(2), "b", Arc::new(AtomicU64::new(0))));
        assert!(t.is_full());
        assert!(!t.insert(addr(3), "c", Arc::new(AtomicU64::new(0))));
        assert_eq!(t.touch(&addr(2), 50_000), Some(&"b"));
        assert_eq!(t.touch(&addr(3), 50_000), None);
        // The reader of "a" saw a reply at 30 s: still alive at 89 s, gone at 90 s.
        seen_a.store(30_000, Relaxed);
        assert_eq!(t.expire(89_999, IDLE_MS), 0);
        assert_eq!(t.expire(90_000, IDLE_MS), 1);
        assert_eq!(t.len(), 1);
        assert_eq!(t.expire(110_000, IDLE_MS), 1);
        assert_eq!(t.len(), 0);
    }
}
