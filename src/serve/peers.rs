//! The registry of downstream agents connected to this agent (their acknowledged durable
//! offsets, for metrics and `ack = "remote"`, and what was sent to them), and the lanes the
//! agent link serves: a lane name resolves to the log and peer registry of that lane.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;

use crate::log::Log;

/// Where a downstream agent's link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Connected, Hello not yet answered.
    Handshake,
    /// Receiving a snapshot (a full sync or a snapshot refresh).
    Snapshot,
    /// Receiving log frames.
    Streaming,
}

impl PeerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Handshake => "handshake",
            PeerState::Snapshot => "snapshot",
            PeerState::Streaming => "streaming",
        }
    }
}

impl std::fmt::Display for PeerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One served lane: the log its link streams from and the agents connected to it.
#[derive(Clone)]
pub struct Lane {
    pub log: Log,
    pub peers: Arc<Peers>,
}

/// The named lanes the agent link serves, beside the standalone stream (a Hello without a
/// lane). Lanes can be added and removed while links run; a Hello naming a lane that is not
/// here is refused with [`crate::link::CloseCode::UnknownLane`]. Cheap to clone (shared).
/// It also holds the slot map served on the control stream ([`crate::link::control`]).
#[derive(Clone, Default)]
pub struct LaneMap {
    lanes: Arc<RwLock<HashMap<String, Lane>>>,
    slot_map: Arc<watch::Sender<Option<crate::cluster::SlotMap>>>,
}

impl LaneMap {
    /// The slot map served to downstream agents' control streams (`None`: not cluster mode,
    /// or not known yet).
    pub fn slot_map(&self) -> &watch::Sender<Option<crate::cluster::SlotMap>> {
        &self.slot_map
    }

    /// Serve `lane` under `name` (replacing a lane of that name).
    pub fn insert(&self, name: &str, lane: Lane) {
        self.write().insert(name.to_string(), lane);
    }

    /// Stop offering `name` to new links (running links keep their lane until they end).
    pub fn remove(&self, name: &str) -> Option<Lane> {
        self.write().remove(name)
    }

    pub fn get(&self, name: &str) -> Option<Lane> {
        self.lanes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The lane names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .lanes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Lane>> {
        self.lanes.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// One connected downstream agent.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Its certificate name (or address when it has none).
    pub name: String,
    pub addr: String,
    /// Highest durable offset it acknowledged.
    pub ack: u64,
    /// Next offset to send it.
    pub sent: u64,
    pub state: PeerState,
}

/// Connected downstream agents.
pub struct Peers {
    next_id: AtomicU64,
    map: Mutex<BTreeMap<u64, PeerInfo>>,
    /// The lowest acknowledged offset among connected peers, never moving backwards; stays
    /// where it was while no peer is connected.
    remote_ack: watch::Sender<u64>,
}

impl Default for Peers {
    fn default() -> Self {
        Peers {
            next_id: AtomicU64::new(0),
            map: Mutex::new(BTreeMap::new()),
            remote_ack: watch::channel(0).0,
        }
    }
}

impl Peers {
    pub fn insert(&self, info: PeerInfo) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, info);
        id
    }

    pub fn update(&self, id: u64, f: impl FnOnce(&mut PeerInfo)) {
        let mut g = self.lock();
        if let Some(p) = g.get_mut(&id) {
            f(p);
        }
        // Only peers that stream count (a handshaking or snapshot-only session has no ack).
        let min = g
            .values()
            .filter(|p| p.state == PeerState::Streaming)
            .map(|p| p.ack)
            .min();
        drop(g);
        if let Some(min) = min {
            self.remote_ack.send_if_modified(|cur| {
                let changed = min > *cur;
                *cur = (*cur).max(min);
                changed
            });
        }
    }

    pub fn remove(&self, id: u64) -> Option<PeerInfo> {
        self.lock().remove(&id)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn snapshot(&self) -> Vec<PeerInfo> {
        self.lock().values().cloned().collect()
    }

    /// Watches the lowest durable offset acknowledged by the connected peers.
    pub fn subscribe_remote_ack(&self) -> watch::Receiver<u64> {
        self.remote_ack.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, PeerInfo>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ack: u64) -> PeerInfo {
        PeerInfo {
            name: "p".into(),
            addr: "a".into(),
            ack,
            sent: 0,
            state: PeerState::Streaming,
        }
    }

    #[test]
    fn remote_ack_is_the_minimum_and_never_moves_back() {
        let peers = Peers::default();
        let rx = peers.subscribe_remote_ack();
        let a = peers.insert(peer(0));
        let b = peers.insert(peer(0));
        peers.update(a, |p| p.ack = 100);
        assert_eq!(*rx.borrow(), 0, "b has acked nothing yet");
        peers.update(b, |p| p.ack = 50);
        assert_eq!(*rx.borrow(), 50);
        peers.remove(b);
        peers.update(a, |p| p.ack = 120);
        assert_eq!(*rx.borrow(), 120);
        peers.remove(a);
        let c = peers.insert(peer(10));
        peers.update(c, |_| {});
        assert_eq!(
            *rx.borrow(),
            120,
            "a late peer does not pull the ack backwards"
        );
    }
}
