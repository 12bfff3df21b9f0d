//! The registry of downstream agents connected to this agent (their acknowledged durable
//! offsets, for metrics and `ack = "remote"`, and what was sent to them), and the lanes the
//! agent link serves: a lane name resolves to the log and peer registry of that lane.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;

use crate::link::up::{Acked, Remote};
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
    /// Highest durable (fsynced) offset it acknowledged.
    pub ack: u64,
    /// Highest offset it acknowledged as received (written to its log); `>= ack`.
    pub received: u64,
    /// Next offset to send it.
    pub sent: u64,
    pub state: PeerState,
}

/// Connected downstream agents.
pub struct Peers {
    next_id: AtomicU64,
    map: Mutex<BTreeMap<u64, PeerInfo>>,
    /// The lowest acknowledged offsets among connected peers, never moving backwards; stays
    /// where it was while no peer is connected.
    remote_ack: watch::Sender<Acked>,
    /// The offset the upstream session last asked the streaming peers to commit (a GETACK).
    commit: watch::Sender<u64>,
}

impl Default for Peers {
    fn default() -> Self {
        Peers {
            next_id: AtomicU64::new(0),
            map: Mutex::new(BTreeMap::new()),
            remote_ack: watch::channel(Acked::default()).0,
            commit: watch::channel(0).0,
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
            .map(|p| Acked {
                received: p.received.max(p.ack),
                durable: p.ack,
            })
            .reduce(|a, b| Acked {
                received: a.received.min(b.received),
                durable: a.durable.min(b.durable),
            });
        drop(g);
        if let Some(min) = min {
            self.remote_ack.send_if_modified(|cur| {
                let next = Acked {
                    received: cur.received.max(min.received),
                    durable: cur.durable.max(min.durable),
                };
                let changed = next != *cur;
                *cur = next;
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

    /// Watches the lowest offsets (received, durable) acknowledged by the connected peers.
    pub fn subscribe_remote_ack(&self) -> watch::Receiver<Acked> {
        self.remote_ack.subscribe()
    }

    /// For an upstream Redis session with `ack = "remote"`: the acknowledged offsets, and
    /// the channel on which it asks the peers' links to commit now.
    pub fn remote(&self) -> Remote {
        Remote {
            acks: self.remote_ack.subscribe(),
            commit: self.commit.clone(),
        }
    }

    /// Watches the offsets the upstream session asks the peers to commit (each link sends a
    /// Commit frame once it has sent that far).
    pub fn subscribe_commit(&self) -> watch::Receiver<u64> {
        self.commit.subscribe()
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
            received: ack,
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
        assert_eq!(rx.borrow().durable, 0, "b has acked nothing yet");
        peers.update(b, |p| p.ack = 50);
        assert_eq!(rx.borrow().durable, 50);
        peers.remove(b);
        peers.update(a, |p| p.ack = 120);
        assert_eq!(rx.borrow().durable, 120);
        peers.remove(a);
        let c = peers.insert(peer(10));
        peers.update(c, |_| {});
        assert_eq!(
            rx.borrow().durable,
            120,
            "a late peer does not pull the ack backwards"
        );
    }

    #[test]
    fn remote_received_is_the_slowest_peers_and_never_below_its_durable() {
        let peers = Peers::default();
        let rx = peers.subscribe_remote_ack();
        let a = peers.insert(peer(0));
        let b = peers.insert(peer(0));
        peers.update(a, |p| p.received = 300);
        peers.update(b, |p| p.received = 200);
        assert_eq!(
            *rx.borrow(),
            Acked {
                received: 200,
                durable: 0
            }
        );
        // b fsynced beyond what it reported received (a first-version peer): received follows.
        peers.update(b, |p| p.ack = 250);
        assert_eq!(
            *rx.borrow(),
            Acked {
                received: 250,
                durable: 0
            }
        );
        peers.update(a, |p| p.ack = 260);
        assert_eq!(
            *rx.borrow(),
            Acked {
                received: 250,
                durable: 250
            }
        );
    }
}
