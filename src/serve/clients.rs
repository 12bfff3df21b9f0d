//! The connections open on the replica port, for `CLIENT ID/LIST/INFO/KILL`: who they are, what
//! they last did, and a kill switch each session watches.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

/// What `CLIENT LIST` shows of one connection.
#[derive(Debug, Clone)]
pub struct ClientEntry {
    pub id: u64,
    pub addr: SocketAddr,
    pub laddr: Option<SocketAddr>,
    pub name: String,
    pub lib_name: String,
    pub lib_ver: String,
    pub user: String,
    pub created: Instant,
    pub last_active: Instant,
    pub last_cmd: String,
    pub proto: i64,
    /// True once the connection asked for PSYNC/SYNC (flag `S`, type `replica`).
    pub replica: bool,
}

impl ClientEntry {
    /// One `CLIENT LIST` line (without the trailing newline), with Redis's field names.
    pub fn line(&self, now: Instant) -> String {
        let age = now.saturating_duration_since(self.created).as_secs();
        let idle = now.saturating_duration_since(self.last_active).as_secs();
        let laddr = self.laddr.map(|a| a.to_string()).unwrap_or_default();
        format!(
            "id={} addr={} laddr={laddr} fd=-1 name={} age={age} idle={idle} flags={} db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.name,
            if self.replica { "S" } else { "N" },
            self.last_cmd,
            self.user,
            self.proto,
            self.lib_name,
            self.lib_ver,
        )
    }
}

struct Slot {
    entry: ClientEntry,
    kill: watch::Sender<bool>,
}

/// Every open connection on the replica port.
pub struct Clients {
    next_id: AtomicU64,
    map: Mutex<BTreeMap<u64, Slot>>,
}

impl Default for Clients {
    fn default() -> Self {
        Clients {
            next_id: AtomicU64::new(1),
            map: Mutex::new(BTreeMap::new()),
        }
    }
}

/// Which connections `CLIENT KILL` applies to (all given conditions must hold).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KillFilter {
    pub id: Option<u64>,
    pub addr: Option<String>,
    pub laddr: Option<String>,
    /// `Some(true)`: replicas only; `Some(false)`: normal clients only.
    pub replica: Option<bool>,
    pub user: Option<String>,
    /// Only connections at least this many seconds old.
    pub max_age: Option<u64>,
    /// The caller itself, spared unless `SKIPME no`.
    pub skip: Option<u64>,
}

/// Removes its connection from the registry when dropped.
pub struct Registration {
    clients: Arc<Clients>,
    pub id: u64,
    pub killed: watch::Receiver<bool>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.clients.lock().remove(&self.id);
    }
}

impl Clients {
    /// Registers a new connection; it stays listed while the returned guard lives.
    pub fn register(
        self: &Arc<Self>,
        addr: SocketAddr,
        laddr: Option<SocketAddr>,
        user: &str,
    ) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let (kill, killed) = watch::channel(false);
        let entry = ClientEntry {
            id,
            addr,
            laddr,
            name: String::new(),
            lib_name: String::new(),
            lib_ver: String::new(),
            user: user.to_string(),
            created: now,
            last_active: now,
            last_cmd: "NULL".into(),
            proto: 2,
            replica: false,
        };
        self.lock().insert(id, Slot { entry, kill });
        Registration {
            clients: Arc::clone(self),
            id,
            killed,
        }
    }

    pub fn update(&self, id: u64, f: impl FnOnce(&mut ClientEntry)) {
        if let Some(s) = self.lock().get_mut(&id) {
            f(&mut s.entry);
        }
    }

    pub fn get(&self, id: u64) -> Option<ClientEntry> {
        self.lock().get(&id).map(|s| s.entry.clone())
    }

    pub fn list(&self) -> Vec<ClientEntry> {
        self.lock().values().map(|s| s.entry.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Signals every matching connection to close; returns how many matched.
    pub fn kill(&self, f: &KillFilter) -> usize {
        let now = Instant::now();
        let g = self.lock();
        let mut n = 0;
        for s in g.values() {
            let e = &s.entry;
            let hit = f.skip != Some(e.id)
                && f.id.is_none_or(|id| id == e.id)
                && f.addr.as_ref().is_none_or(|a| *a == e.addr.to_string())
                && f.laddr
                    .as_ref()
                    .is_none_or(|a| e.laddr.is_some_and(|l| *a == l.to_string()))
                && f.replica.is_none_or(|r| r == e.replica)
                && f.user.as_ref().is_none_or(|u| *u == e.user)
                && f.max_age
                    .is_none_or(|age| now.saturating_duration_since(e.created).as_secs() >= age);
            if hit {
                s.kill.send_replace(true);
                n += 1;
            }
        }
        n
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Slot>> {
        // A poisoned map only means a panic elsewhere; the data is still usable.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn register_list_kill_and_drop() {
        let c = Arc::new(Clients::default());
        let a = c.register(addr(1000), Some(addr(6380)), "default");
        let b = c.register(addr(1001), Some(addr(6380)), "default");
        assert_eq!((a.id, b.id), (1, 2), "ids start at 1 like Redis");
        c.update(b.id, |e| e.replica = true);
        assert!(c
            .get(a.id)
            .unwrap()
            .line(Instant::now())
            .contains("flags=N"));
        let only_me = KillFilter {
            skip: Some(a.id),
            id: Some(a.id),
            ..Default::default()
        };
        assert_eq!(c.kill(&only_me), 0, "SKIPME spares the caller");
        let replicas = KillFilter {
            replica: Some(true),
            ..Default::default()
        };
        assert_eq!(c.kill(&replicas), 1);
        assert!(*b.killed.borrow());
        assert!(!*a.killed.borrow());
        let by_addr = KillFilter {
            addr: Some("127.0.0.1:1000".into()),
            ..Default::default()
        };
        assert_eq!(c.kill(&by_addr), 1);
        drop(a);
        assert_eq!(c.len(), 1);
    }
}
