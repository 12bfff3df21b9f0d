//! The relay's tasks: one per direction (each owning a [`Link`] heap and sleeping until its next
//! deadline), one reader per client upstream socket, and a monitor (outage file, duration,
//! periodic summary).
//!
//! I/O is batched (see [`Sock`]): a receive takes up to [`RECV_BATCH`] GRO buffers at once and
//! splits them into datagrams, each impaired on its own; a delivery sends every due datagram,
//! runs of equal-sized ones to the same destination going out as one GSO send.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{interval, interval_at, sleep, sleep_until, Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::clients::{ClientTable, IDLE_MS, MAX_CLIENTS};
use super::link::{Link, Verdict};
use super::sock::{RecvBatch, Sock, MAX_GSO_BYTES, RECV_BATCH};
use super::stats::{Controls, Counters, Dir, WanSimStats};

/// Receive batches (each at most [`RECV_BATCH`] buffers of datagrams) waiting between the client
/// readers and the server -> client task.
pub(crate) const DOWN_CHANNEL: usize = 512;
/// How often idle clients are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// How often the outage file is checked.
const OUTAGE_POLL: Duration = Duration::from_millis(100);
/// How often the summary line is logged.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// State shared by all tasks of one relay.
#[derive(Debug)]
pub(crate) struct Shared {
    pub counters: Counters,
    pub controls: Controls,
    pub forward: SocketAddr,
    pub outage_file: Option<PathBuf>,
    pub duration: Option<Duration>,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        let ms = Instant::now()
            .saturating_duration_since(self.controls.start)
            .as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX)
    }

    pub(crate) fn stats(&self) -> WanSimStats {
        self.counters
            .snapshot(self.controls.outage_at(Instant::now()))
    }

    /// Re-reads whether the outage file exists.
    pub(crate) async fn refresh_outage_file(&self) {
        if let Some(path) = &self.outage_file {
            let on = matches!(tokio::fs::try_exists(path).await, Ok(true));
            self.controls.file_outage.store(on, Relaxed);
        }
    }
}

/// A packet on its way: sent from `via` to `dest` when due.
pub(crate) struct Datagram {
    via: Arc<Sock>,
    dest: SocketAddr,
    data: Bytes,
}

/// Aborts the task when the owning client entry goes away.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Client {
    socket: Arc<Sock>,
    _reader: AbortOnDrop,
}

/// Offers an arriving datagram to the link, counting what is dropped and why.
fn admit(shared: &Shared, link: &mut Link<Datagram>, now: Instant, dg: Datagram) {
    let c = &shared.counters;
    if shared.controls.outage_at(now) {
        Counters::bump(&c.dropped_outage);
        return;
    }
    let len = dg.data.len();
    match link.offer(now, len, dg, &shared.controls.params()) {
        Verdict::Scheduled { reordered, .. } => {
            if reordered {
                Counters::bump(&c.reordered);
            }
        }
        Verdict::Lost => Counters::bump(&c.dropped_loss),
        Verdict::QueueFull => Counters::bump(&c.dropped_queue),
    }
}

/// A run of due datagrams for one GSO send: same socket, same destination, equal sizes (the
/// last may be shorter), joined in `out`.
struct Run {
    via: Arc<Sock>,
    dest: SocketAddr,
    segment: usize,
    count: usize,
    closed: bool,
}

impl Run {
    fn takes(&self, dg: &Datagram, out: &[u8]) -> bool {
        !self.closed
            && self.segment > 0
            && dg.dest == self.dest
            && Arc::ptr_eq(&dg.via, &self.via)
            && dg.data.len() <= self.segment
            && self.count < self.via.max_segments()
            && out.len() + dg.data.len() <= MAX_GSO_BYTES
    }
}

/// Sends every due datagram; an outage at delivery time drops packets still in flight.
async fn deliver_due(shared: &Shared, link: &mut Link<Datagram>, dir: Dir, out: &mut Vec<u8>) {
    let now = Instant::now();
    let outage = shared.controls.outage_at(now);
    let mut run: Option<Run> = None;
    out.clear();
    while let Some(dg) = link.pop_due(now) {
        if outage {
            Counters::bump(&shared.counters.dropped_outage);
            continue;
        }
        if let Some(r) = run.take_if(|r| !r.takes(&dg, out)) {
            flush(shared, dir, &r, out).await;
            out.clear();
        }
        let r = run.get_or_insert_with(|| Run {
            via: dg.via.clone(),
            dest: dg.dest,
            segment: dg.data.len(),
            count: 0,
            closed: false,
        });
        r.count += 1;
        r.closed = dg.data.len() < r.segment;
        out.extend_from_slice(&dg.data);
    }
    if let Some(r) = run {
        flush(shared, dir, &r, out).await;
    }
}

/// Sends one run; a failed send counts each of its datagrams as a send error.
async fn flush(shared: &Shared, dir: Dir, run: &Run, out: &[u8]) {
    match run.via.send(run.dest, out, run.segment).await {
        Ok(()) => shared.counters.delivered(dir, run.count, out.len()),
        Err(e) => {
            shared
                .counters
                .send_errors
                .fetch_add(run.count as u64, Relaxed);
            debug!(dest = %run.dest, error = %e, "wan-sim send failed");
        }
    }
}

/// The datagrams of one received buffer (a GRO buffer holds several, `stride` bytes apart; an
/// empty buffer is one empty datagram).
fn datagrams(bytes: &[u8], stride: usize) -> impl Iterator<Item = Bytes> {
    let all = Bytes::copy_from_slice(bytes);
    (0..all.len().max(1))
        .step_by(stride.max(1))
        .map(move |at| all.slice(at..(at + stride).min(all.len())))
}

/// Resolves once a stop is requested (or the relay is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn recv_error(what: &str, e: std::io::Error) {
    debug!(error = %e, "wan-sim {what} receive failed");
    // A persistent error must not turn into a busy loop.
    sleep(Duration::from_millis(10)).await;
}

/// Client -> server: reads the listen socket, maps clients to upstream sockets, delivers.
pub(crate) async fn up_task(
    shared: Arc<Shared>,
    listen: Arc<Sock>,
    down_tx: mpsc::Sender<Vec<Datagram>>,
    mut link: Link<Datagram>,
    mut stop: watch::Receiver<bool>,
) {
    let mut clients: ClientTable<Client> = ClientTable::new(MAX_CLIENTS);
    let mut batch = RecvBatch::new();
    let mut out = Vec::with_capacity(MAX_GSO_BYTES);
    let mut sweep = interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let next = link.next_deadline();
        tokio::select! {
            _ = stopped(&mut stop) => break,
            _ = sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                deliver_due(&shared, &mut link, Dir::Up, &mut out).await;
            }
            r = listen.recv(&mut batch) => match r {
                Ok(n) => {
                    let now = Instant::now();
                    for i in 0..n {
                        let (from, bytes, stride) = batch.get(i);
                        let Some(via) = client_socket(&shared, &mut clients, from, &listen, &down_tx)
                        else {
                            continue;
                        };
                        for data in datagrams(bytes, stride) {
                            let dg = Datagram { via: via.clone(), dest: shared.forward, data };
                            admit(&shared, &mut link, now, dg);
                        }
                    }
                    deliver_due(&shared, &mut link, Dir::Up, &mut out).await;
                }
                Err(e) => recv_error("listen", e).await,
            },
            _ = sweep.tick() => {
                let gone = clients.expire(shared.now_ms(), IDLE_MS);
                if gone > 0 {
                    debug!(gone, "wan-sim closed idle client mappings");
                    shared.counters.clients_expired.fetch_add(gone as u64, Relaxed);
                    shared.counters.clients_active.store(clients.len() as u64, Relaxed);
                }
            }
        }
    }
    shared.counters.clients_active.store(0, Relaxed);
}

/// The upstream socket for client `from`, opening it (and its reader) on first sight.
fn client_socket(
    shared: &Arc<Shared>,
    clients: &mut ClientTable<Client>,
    from: SocketAddr,
    listen: &Arc<Sock>,
    down_tx: &mpsc::Sender<Vec<Datagram>>,
) -> Option<Arc<Sock>> {
    let now_ms = shared.now_ms();
    if let Some(c) = clients.touch(&from, now_ms) {
        return Some(c.socket.clone());
    }
    if clients.is_full() {
        Counters::bump(&shared.counters.dropped_clients);
        return None;
    }
    let ip = if shared.forward.is_ipv6() {
        Ipv6Addr::LOCALHOST.into()
    } else {
        Ipv4Addr::LOCALHOST.into()
    };
    let socket = match Sock::bind(SocketAddr::new(ip, 0)) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            warn!(client = %from, error = %e, "wan-sim cannot open an upstream socket");
            Counters::bump(&shared.counters.dropped_clients);
            return None;
        }
    };
    let seen = Arc::new(AtomicU64::new(now_ms));
    let reader = tokio::spawn(client_reader(
        shared.clone(),
        socket.clone(),
        from,
        listen.clone(),
        down_tx.clone(),
        seen.clone(),
    ));
    let entry = Client {
        socket: socket.clone(),
        _reader: AbortOnDrop(reader),
    };
    clients.insert(from, entry, seen);
    Counters::bump(&shared.counters.clients_opened);
    shared
        .counters
        .clients_active
        .store(clients.len() as u64, Relaxed);
    debug!(client = %from, upstream = ?socket.local_addr().ok(), "wan-sim new client mapping");
    Some(socket)
}

/// Reads replies for one client and hands them to the server -> client task, one batch per
/// receive call.
async fn client_reader(
    shared: Arc<Shared>,
    socket: Arc<Sock>,
    client: SocketAddr,
    listen: Arc<Sock>,
    tx: mpsc::Sender<Vec<Datagram>>,
    seen: Arc<AtomicU64>,
) {
    let mut batch = RecvBatch::new();
    loop {
        let n = match socket.recv(&mut batch).await {
            Ok(n) => n,
            Err(e) => {
                recv_error("upstream", e).await;
                continue;
            }
        };
        let mut dgs = Vec::new();
        for i in 0..n.min(RECV_BATCH) {
            let (from, bytes, stride) = batch.get(i);
            if from != shared.forward {
                continue; // not from the server: ignore
            }
            dgs.extend(datagrams(bytes, stride).map(|data| Datagram {
                via: listen.clone(),
                dest: client,
                data,
            }));
        }
        if dgs.is_empty() {
            continue;
        }
        seen.store(shared.now_ms(), Relaxed);
        let count = dgs.len() as u64;
        match tx.try_send(dgs) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                shared.counters.dropped_queue.fetch_add(count, Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

/// Server -> client: impairs what the client readers pass on, delivers from the listen socket.
pub(crate) async fn down_task(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Vec<Datagram>>,
    mut link: Link<Datagram>,
    mut stop: watch::Receiver<bool>,
) {
    let mut out = Vec::with_capacity(MAX_GSO_BYTES);
    loop {
        let next = link.next_deadline();
        tokio::select! {
            _ = stopped(&mut stop) => break,
            _ = sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                deliver_due(&shared, &mut link, Dir::Down, &mut out).await;
            }
            dgs = rx.recv() => match dgs {
                Some(dgs) => {
                    let now = Instant::now();
                    for dg in dgs {
                        admit(&shared, &mut link, now, dg);
                    }
                    deliver_due(&shared, &mut link, Dir::Down, &mut out).await;
                }
                None => break,
            },
        }
    }
}

/// Polls the outage file, logs outage changes and the periodic summary, ends `--duration`.
pub(crate) async fn monitor(
    shared: Arc<Shared>,
    stop_tx: Arc<watch::Sender<bool>>,
    mut stop: watch::Receiver<bool>,
) {
    let start = shared.controls.start;
    let end = shared.duration.and_then(|d| start.checked_add(d));
    let mut poll = interval(OUTAGE_POLL);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut summary = interval_at(start + SUMMARY_EVERY, SUMMARY_EVERY);
    summary.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut outage = shared.controls.outage_at(Instant::now());
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            _ = sleep_until(end.unwrap_or(start)), if end.is_some() => {
                info!("wan-sim: --duration elapsed, stopping");
                stop_tx.send_replace(true);
                break;
            }
            _ = poll.tick() => {
                shared.refresh_outage_file().await;
                let now_on = shared.controls.outage_at(Instant::now());
                if now_on != outage {
                    outage = now_on;
                    info!("wan-sim: outage {}", if now_on { "started" } else { "ended" });
                }
            }
            _ = summary.tick() => info!("{}", shared.stats()),
        }
    }
}
