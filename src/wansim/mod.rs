//! `georelay wan-sim`: a user-space UDP impairment relay on loopback for tests, demos and
//! benchmarks of the QUIC link (there is no `tc netem` here).
//!
//! Clients send to `listen`; for each client source address the relay opens its own upstream
//! socket on loopback (port 0) towards `forward`, so the server sees one address per client;
//! the server's replies go back to that client from the listen socket.
//!
//! Both directions are impaired independently, each by its own `link` model: random loss,
//! a token-bucket rate limit with a bounded tail-drop queue, one-way `delay` plus uniform
//! jitter, and reordering. **The delay applies in each direction, so the round trip gains about
//! `2 x delay`** (`--delay 40ms` gives an RTT near 80 ms). An outage (the `--outage-file`
//! exists, the `--outage-after`/`--outage-for` window, or [`WanSim::set_blackhole`]) drops
//! everything in both directions, including packets already in flight.
//!
//! Loopback only: `listen` and `forward` must be in 127.0.0.0/8 or be `::1`.
//!
//! Bounds: per direction at most 65 536 packets / 32 MiB in flight, plus the rate-limiter queue
//! (`--queue`, default 1 BDP clamped to 64 KiB..=4 MiB); 512 receive batches (each at most 8 GRO
//! buffers, as many bytes as were received) between the client readers and the server -> client
//! task; 256 clients, each mapping closed after 60 s without traffic (each with 512 KiB of
//! receive buffers).
//! Whatever does not fit is dropped and counted in [`WanSimStats`]. Packets still queued at
//! shutdown are discarded.
//!
//! Tasks: one per direction (a `BinaryHeap` of `(deliver_at, seq, packet)` and one
//! `sleep_until` on its head), one reader per client upstream socket, one monitor. Socket I/O
//! is batched (`recvmmsg` + UDP GRO in, UDP GSO out, through `quinn::udp`; see `sock.rs`), and
//! every datagram is still impaired on its own.

mod clients;
mod error;
mod link;
mod options;
mod relay;
mod sock;
mod stats;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{info, warn};

pub use error::WanSimError;
pub use options::{WanSimOptions, USAGE};
pub use stats::WanSimStats;

use link::Link;
use relay::Shared;
use sock::Sock;
use stats::{Controls, Counters};

/// A running relay. Dropping it aborts its tasks; [`WanSim::shutdown`] stops it cleanly.
pub struct WanSim {
    shared: Arc<Shared>,
    local: SocketAddr,
    stop: Arc<watch::Sender<bool>>,
    tasks: JoinSet<()>,
}

/// A cloneable handle that stops a [`WanSim`] from elsewhere (e.g. on Ctrl-C while
/// [`WanSim::run_until_done`] is awaited).
#[derive(Clone, Debug)]
pub struct WanSimShutdown {
    stop: Arc<watch::Sender<bool>>,
}

impl WanSimShutdown {
    /// Asks the relay to stop; idempotent.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }
}

impl WanSim {
    /// Validates `opts`, binds the listen socket (port 0 allowed) and starts relaying.
    pub async fn start(opts: WanSimOptions) -> Result<WanSim, WanSimError> {
        opts.validate()?;
        let listen = Sock::bind(opts.listen).map_err(|source| WanSimError::Bind {
            addr: opts.listen,
            source,
        })?;
        let local = listen.local_addr()?;
        let start = Instant::now();
        let window = opts.outage_after.zip(opts.outage_for);
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            controls: Controls::new(
                start,
                opts.delay,
                opts.jitter,
                opts.loss,
                opts.reorder,
                window,
            ),
            forward: opts.forward,
            outage_file: opts.outage_file.clone(),
            duration: opts.duration,
        });
        shared.refresh_outage_file().await;

        let seed = opts.seed.unwrap_or_else(|| rand::rng().random());
        let queue = opts.effective_queue();
        let rate = opts.rate_bytes_per_sec;
        let up = Link::new(seed, rate, queue, start);
        let down = Link::new(seed ^ 0x9E37_79B9_7F4A_7C15, rate, queue, start);

        let (stop, stop_rx) = watch::channel(false);
        let stop = Arc::new(stop);
        let (down_tx, down_rx) = mpsc::channel(relay::DOWN_CHANNEL);
        let listen = Arc::new(listen);
        let mut tasks = JoinSet::new();
        tasks.spawn(relay::up_task(
            shared.clone(),
            listen,
            down_tx,
            up,
            stop_rx.clone(),
        ));
        tasks.spawn(relay::down_task(
            shared.clone(),
            down_rx,
            down,
            stop_rx.clone(),
        ));
        tasks.spawn(relay::monitor(shared.clone(), stop.clone(), stop_rx));
        info!(
            listen = %local,
            forward = %opts.forward,
            delay = ?opts.delay,
            jitter = ?opts.jitter,
            loss = opts.loss,
            reorder = opts.reorder,
            rate_bytes_per_sec = rate,
            queue_bytes = queue,
            seed,
            "wan-sim started (delay applies each way: RTT ~ 2 x delay)"
        );
        Ok(WanSim {
            shared,
            local,
            stop,
            tasks,
        })
    }

    /// The address clients send to (the bound port when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Turns the programmatic blackhole on or off (in addition to file and timed outages).
    pub fn set_blackhole(&self, on: bool) {
        self.shared.controls.manual_outage.store(on, Relaxed);
    }

    /// Changes the loss probability for packets arriving from now on (clamped to 0..=1).
    pub fn set_loss(&self, p: f64) {
        self.shared.controls.set_loss(p);
    }

    /// Changes the one-way delay for packets arriving from now on.
    pub fn set_delay(&self, d: Duration) {
        self.shared.controls.set_delay(d);
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> WanSimStats {
        self.shared.stats()
    }

    /// A handle that stops this relay from another task.
    pub fn shutdown_handle(&self) -> WanSimShutdown {
        WanSimShutdown {
            stop: self.stop.clone(),
        }
    }

    /// Stops the relay, waits for its tasks and returns the final counters.
    pub async fn shutdown(self) -> WanSimStats {
        self.stop.send_replace(true);
        self.run_until_done().await
    }

    /// Runs until `--duration` elapses or a shutdown is requested (through
    /// [`WanSim::shutdown_handle`]); logs and returns the final counters. Does not watch Ctrl-C.
    pub async fn run_until_done(mut self) -> WanSimStats {
        while let Some(done) = self.tasks.join_next().await {
            if let Err(e) = done {
                warn!(error = %e, "wan-sim task failed");
            }
            // Whichever task ends first, the others follow.
            self.stop.send_replace(true);
        }
        let stats = self.shared.stats();
        info!("{stats} (final)");
        stats
    }
}
