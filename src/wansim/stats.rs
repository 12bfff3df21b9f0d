//! Shared state of a running wan-sim: atomic counters, live knobs and the outage switches.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

use super::link::Params;

/// The two directions: `Up` is client -> server, `Down` is server -> client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    Up,
    Down,
}

/// A snapshot of the relay's counters: plain numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WanSimStats {
    /// Packets delivered client -> server.
    pub up_packets: u64,
    /// Payload bytes delivered client -> server.
    pub up_bytes: u64,
    /// Packets delivered server -> client.
    pub down_packets: u64,
    /// Payload bytes delivered server -> client.
    pub down_bytes: u64,
    /// Packets dropped by random loss (both directions).
    pub dropped_loss: u64,
    /// Packets dropped by an outage: file, timed or [`super::WanSim::set_blackhole`].
    pub dropped_outage: u64,
    /// Packets dropped by a full queue (rate-limiter tail-drop, heap or channel bound).
    pub dropped_queue: u64,
    /// Packets dropped because the client table was full.
    pub dropped_clients: u64,
    /// Packets given the reorder hold-back.
    pub reordered: u64,
    /// Sends that failed at the socket (counted, then dropped).
    pub send_errors: u64,
    /// Client mappings open now.
    pub clients_active: u64,
    /// Client mappings opened since start.
    pub clients_opened: u64,
    /// Client mappings closed after 60 s idle.
    pub clients_expired: u64,
    /// Whether an outage is in force right now.
    pub outage: bool,
}

impl fmt::Display for WanSimStats {
    /// The one-line summary logged every 10 s and at exit.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wan-sim: up {} pkts/{} B, down {} pkts/{} B, dropped loss={} outage={} queue={} \
             table_full={} reordered={} send_errors={} clients={} (opened {}, expired {}){}",
            self.up_packets,
            self.up_bytes,
            self.down_packets,
            self.down_bytes,
            self.dropped_loss,
            self.dropped_outage,
            self.dropped_queue,
            self.dropped_clients,
            self.reordered,
            self.send_errors,
            self.clients_active,
            self.clients_opened,
            self.clients_expired,
            if self.outage { ", OUTAGE" } else { "" },
        )
    }
}

/// The atomic counters behind [`WanSimStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub up_packets: AtomicU64,
    pub up_bytes: AtomicU64,
    pub down_packets: AtomicU64,
    pub down_bytes: AtomicU64,
    pub dropped_loss: AtomicU64,
    pub dropped_outage: AtomicU64,
    pub dropped_queue: AtomicU64,
    pub dropped_clients: AtomicU64,
    pub reordered: AtomicU64,
    pub send_errors: AtomicU64,
    pub clients_active: AtomicU64,
    pub clients_opened: AtomicU64,
    pub clients_expired: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn delivered(&self, dir: Dir, packets: usize, bytes: usize) {
        let (p, b) = match dir {
            Dir::Up => (&self.up_packets, &self.up_bytes),
            Dir::Down => (&self.down_packets, &self.down_bytes),
        };
        p.fetch_add(packets as u64, Relaxed);
        b.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn snapshot(&self, outage: bool) -> WanSimStats {
        let g = |c: &AtomicU64| c.load(Relaxed);
        WanSimStats {
            up_packets: g(&self.up_packets),
            up_bytes: g(&self.up_bytes),
            down_packets: g(&self.down_packets),
            down_bytes: g(&self.down_bytes),
            dropped_loss: g(&self.dropped_loss),
            dropped_outage: g(&self.dropped_outage),
            dropped_queue: g(&self.dropped_queue),
            dropped_clients: g(&self.dropped_clients),
            reordered: g(&self.reordered),
            send_errors: g(&self.send_errors),
            clients_active: g(&self.clients_active),
            clients_opened: g(&self.clients_opened),
            clients_expired: g(&self.clients_expired),
            outage,
        }
    }
}

/// Live knobs and outage switches, read by both direction tasks.
#[derive(Debug)]
pub(crate) struct Controls {
    pub start: Instant,
    pub manual_outage: AtomicBool,
    pub file_outage: AtomicBool,
    /// `(after, for)` of the timed outage, from `start`.
    pub window: Option<(Duration, Duration)>,
    loss_bits: AtomicU64,
    delay_nanos: AtomicU64,
    jitter: Duration,
    reorder: f64,
}

impl Controls {
    pub(crate) fn new(
        start: Instant,
        delay: Duration,
        jitter: Duration,
        loss: f64,
        reorder: f64,
        window: Option<(Duration, Duration)>,
    ) -> Self {
        let c = Controls {
            start,
            manual_outage: AtomicBool::new(false),
            file_outage: AtomicBool::new(false),
            window,
            loss_bits: AtomicU64::new(0),
            delay_nanos: AtomicU64::new(0),
            jitter,
            reorder,
        };
        c.set_loss(loss);
        c.set_delay(delay);
        c
    }

    /// Sets the loss probability, clamped to 0..=1 (NaN counts as 0).
    pub(crate) fn set_loss(&self, p: f64) {
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        self.loss_bits.store(p.to_bits(), Relaxed);
    }

    /// Sets the one-way delay (saturating at ~584 years).
    pub(crate) fn set_delay(&self, d: Duration) {
        let n = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.delay_nanos.store(n, Relaxed);
    }

    pub(crate) fn params(&self) -> Params {
        Params {
            delay: Duration::from_nanos(self.delay_nanos.load(Relaxed)),
            jitter: self.jitter,
            loss: f64::from_bits(self.loss_bits.load(Relaxed)),
            reorder: self.reorder,
        }
    }

    /// Whether any outage (manual, file or timed) is in force at `now`.
    pub(crate) fn outage_at(&self, now: Instant) -> bool {
        if self.manual_outage.load(Relaxed) || self.file_outage.load(Relaxed) {
            return true;
        }
        match self.window {
            Some((after, len)) => {
                let t = now.saturating_duration_since(self.start);
                t >= after && t < after.saturating_add(len)
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn timed_outage_window() {
        let t0 = Instant::now();
        let c = Controls::new(t0, S, S, 0.0, 0.0, Some((10 * S, 60 * S)));
        assert!(!c.outage_at(t0));
        assert!(!c.outage_at(t0 + 9 * S));
        assert!(c.outage_at(t0 + 10 * S));
        assert!(c.outage_at(t0 + 69 * S));
        assert!(!c.outage_at(t0 + 70 * S));
    }

    #[test]
    fn switches_and_knobs() {
        let t0 = Instant::now();
        let c = Controls::new(t0, S, S, 0.5, 0.25, None);
        assert!(!c.outage_at(t0));
        c.manual_outage.store(true, Relaxed);
        assert!(c.outage_at(t0));
        c.manual_outage.store(false, Relaxed);
        c.file_outage.store(true, Relaxed);
        assert!(c.outage_at(t0));
        assert_eq!(c.params().loss, 0.5);
        c.set_loss(7.0);
        assert_eq!(c.params().loss, 1.0);
        c.set_loss(f64::NAN);
        assert_eq!(c.params().loss, 0.0);
        c.set_delay(Duration::from_millis(3));
        assert_eq!(c.params().delay, Duration::from_millis(3));
        assert_eq!(c.params().reorder, 0.25);
    }

    #[test]
    fn summary_line() {
        let counters = Counters::default();
        counters.delivered(Dir::Up, 1, 100);
        counters.delivered(Dir::Down, 1, 40);
        Counters::bump(&counters.dropped_loss);
        let s = counters.snapshot(true);
        assert_eq!((s.up_packets, s.up_bytes, s.down_bytes), (1, 100, 40));
        let line = s.to_string();
        assert!(line.starts_with("wan-sim: up 1 pkts/100 B, down 1 pkts/40 B"));
        assert!(line.contains("loss=1") && line.ends_with("OUTAGE") && !line.contains('\n'));
    }
}
