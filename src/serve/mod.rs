//! The agent's downstream side for Redis replicas: the replica port, the registry of served
//! replicas, and the shared context.

pub mod agent;
mod agent_stream;
pub mod clients;
pub mod cluster;
pub mod cluster_port;
pub mod commands;
pub mod feed;
pub mod info;
mod pacing;
pub mod peers;
pub mod rdbcheck;
pub mod session;
pub mod tooling;
mod tooling_client;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::log::{Log, LogError};
use crate::metrics::{Health, Metrics};
use crate::resp::Limits;

/// Limits for what clients send on the replica port: replicas and tools only send short
/// commands.
pub const CLIENT_LIMITS: Limits = Limits {
    max_bulk: 64 * 1024,
    max_array: 1024,
    max_depth: 1,
    max_inline: 64 * 1024,
};

/// Why a served connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("log: {0}")]
    Log(#[from] LogError),
    #[error("{0}")]
    Dropped(&'static str),
}

/// Where a served replica is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    /// Waiting for a snapshot to exist (held with `\n` keepalives).
    WaitBgsave,
    /// Receiving the RDB.
    SendBulk,
    /// Receiving the stream.
    Online,
}

impl ReplicaState {
    pub fn as_redis(&self) -> &'static str {
        match self {
            ReplicaState::WaitBgsave => "wait_bgsave",
            ReplicaState::SendBulk => "send_bulk",
            ReplicaState::Online => "online",
        }
    }
}

/// What INFO and the metrics show about one served replica.
#[derive(Debug, Clone)]
pub struct ReplicaInfo {
    pub ip: String,
    pub port: u16,
    pub state: ReplicaState,
    /// Highest offset it acknowledged receiving (`REPLCONF ACK`).
    pub ack_offset: u64,
    /// Highest offset it acknowledged as fsynced (`FACK`, Redis 7.2+/Valkey with appendonly);
    /// 0 when it never sent one.
    pub fack_offset: u64,
    pub last_ack: Instant,
    /// "partial" or "full" once the sync type is known.
    pub last_sync: &'static str,
}

impl ReplicaInfo {
    /// The `replica="ip:port"` label value.
    pub fn label(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

/// The set of replicas in sync mode.
#[derive(Default)]
pub struct Replicas {
    next_id: AtomicU64,
    map: Mutex<BTreeMap<u64, ReplicaInfo>>,
    /// Full syncs sent and not yet acknowledged (RDB version safety).
    pub unacked: rdbcheck::Unacked,
}

impl Replicas {
    pub fn insert(&self, info: ReplicaInfo) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, info);
        id
    }

    pub fn update(&self, id: u64, f: impl FnOnce(&mut ReplicaInfo)) {
        if let Some(r) = self.lock().get_mut(&id) {
            f(r);
        }
    }

    pub fn remove(&self, id: u64) -> Option<ReplicaInfo> {
        self.lock().remove(&id)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn snapshot_one(&self, id: u64) -> Option<ReplicaInfo> {
        self.lock().get(&id).cloned()
    }

    pub fn snapshot(&self) -> Vec<ReplicaInfo> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ReplicaInfo>> {
        // A poisoned map only means a panic elsewhere; the data is still usable.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Everything a served connection needs.
#[derive(Clone)]
pub struct ServeCtx {
    pub log: Log,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub replicas: Arc<Replicas>,
    pub requirepass: Option<String>,
    pub timeout: std::time::Duration,
    pub max_replicas: usize,
    pub username: String,
    pub max_connections: usize,
    /// Connections currently open on the replica port.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    /// host:port of our upstream, for INFO/ROLE.
    pub upstream: String,
    pub shutdown: watch::Receiver<bool>,
    /// The replica port's client registry and what it tells tools about itself.
    pub port: Arc<PortState>,
}

/// State of the replica port shared by its connections: `CLIENT` registry, the origin's release
/// (for INFO/HELLO), and this process's identity in INFO.
pub struct PortState {
    pub clients: Arc<clients::Clients>,
    pub origin: crate::origin::OriginCache,
    /// INFO `run_id`: 40 random hex characters, new with every process (Sentinel uses it to see
    /// restarts).
    pub run_id: String,
    pub started: Instant,
}

impl Default for PortState {
    fn default() -> Self {
        PortState {
            clients: Arc::default(),
            origin: crate::origin::OriginCache::default(),
            run_id: (0..40)
                .map(|_| char::from(b"0123456789abcdef"[rand::random_range(0..16usize)]))
                .collect(),
            started: Instant::now(),
        }
    }
}

/// Counts a connection on the replica port until dropped.
struct ConnGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Accepts replica connections until shutdown.
/// With `tls`, each connection first completes a TLS handshake (bounded by serve.timeout).
pub async fn run(listener: TcpListener, ctx: ServeCtx, tls: Option<tokio_rustls::TlsAcceptor>) {
    let mut shutdown = ctx.shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => {
                    let c = ctx.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let _ = sock.set_nodelay(true);
                        let laddr = sock.local_addr().ok();
                        let stream: crate::redistls::BoxStream = match tls {
                            None => Box::new(sock),
                            Some(acceptor) => match tokio::time::timeout(c.timeout, acceptor.accept(sock)).await {
                                Ok(Ok(s)) => Box::new(s),
                                Ok(Err(e)) => {
                                    c.metrics.served_refusals.with_label_values(&["redis", "tls"]).inc();
                                    tracing::warn!(%peer, "TLS handshake on the replica port failed: {e}");
                                    return;
                                }
                                Err(_) => {
                                    tracing::warn!(%peer, "TLS handshake on the replica port timed out");
                                    return;
                                }
                            },
                        };
                        serve_one(stream, peer, laddr, c).await
                    });
                }
                Err(e) => {
                    tracing::warn!("replica port accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}

async fn serve_one(
    mut sock: crate::redistls::BoxStream,
    peer: SocketAddr,
    laddr: Option<SocketAddr>,
    ctx: ServeCtx,
) {
    use std::sync::atomic::Ordering;
    let open = ctx.connections.fetch_add(1, Ordering::Relaxed) + 1;
    let _guard = ConnGuard(ctx.connections.clone());
    if open > ctx.max_connections {
        use tokio::io::AsyncWriteExt;
        ctx.metrics
            .served_refusals
            .with_label_values(&["redis", "max_connections"])
            .inc();
        tracing::warn!(%peer, "refused: serve.max_connections ({}) reached", ctx.max_connections);
        let _ = sock
            .write_all(b"-ERR max number of clients reached (serve.max_connections)\r\n")
            .await;
        return;
    }
    match session::Session::new(sock, peer, laddr, ctx).run().await {
        Ok(()) => tracing::debug!(%peer, "replica connection closed"),
        Err(ServeError::Io(e)) => tracing::debug!(%peer, "replica connection ended: {e}"),
        Err(e) => tracing::warn!(%peer, "replica connection closed: {e}"),
    }
}
