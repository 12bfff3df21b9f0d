//! One impaired direction of the simulated WAN, without I/O: loss, token-bucket rate limit with
//! a tail-drop queue, delay + jitter, reorder, and a bounded delivery heap ordered by
//! `(deliver_at, seq)`.
//!
//! Model per packet, like a router port followed by a long fibre: drop by loss; then the token
//! bucket gives its departure time (tail-drop if the backlog would exceed the queue); then it
//! arrives `delay ± jitter` later (a reordered packet `delay / 2 + 1ms` later still). With jitter,
//! packets may also overtake each other, as with netem.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

/// Most packets waiting in one direction's heap.
pub(crate) const MAX_PACKETS: usize = 65_536;
/// Most payload bytes waiting in one direction's heap.
pub(crate) const MAX_BYTES: usize = 32 << 20;

/// The live impairment knobs read for each packet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Params {
    pub delay: Duration,
    pub jitter: Duration,
    pub loss: f64,
    pub reorder: f64,
}

/// What happened to an offered packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Queued for delivery at this instant.
    Scheduled { at: Instant, reordered: bool },
    /// Dropped by random loss.
    Lost,
    /// Dropped because the rate-limiter queue or the heap is full.
    QueueFull,
}

/// Token bucket whose debt is the queue: a packet leaves when the debt it adds is paid off.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    burst: f64,
    queue: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u64, queue: u64, now: Instant) -> Self {
        let rate = rate as f64;
        // 5 ms worth of line rate, at least 16 KiB, may go out back to back.
        let burst = (rate / 200.0).max(16.0 * 1024.0);
        TokenBucket {
            rate,
            burst,
            queue: queue as f64,
            tokens: burst,
            last: now,
        }
    }

    /// Departure time of a `len`-byte packet arriving at `now`, or `None` if the queue is full.
    fn admit(&mut self, now: Instant, len: usize) -> Option<Instant> {
        if now > self.last {
            let dt = now.duration_since(self.last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
            self.last = now;
        }
        let after = self.tokens - len as f64;
        if after < -self.queue {
            return None;
        }
        self.tokens = after;
        if after >= 0.0 {
            Some(now)
        } else {
            Some(now + Duration::from_secs_f64(-after / self.rate))
        }
    }
}

struct Scheduled<T> {
    at: Instant,
    seq: u64,
    len: usize,
    item: T,
}

// Reversed on (at, seq) so that `BinaryHeap` (a max-heap) pops the earliest first.
impl<T> Ord for Scheduled<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}
impl<T> PartialOrd for Scheduled<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> PartialEq for Scheduled<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<T> Eq for Scheduled<T> {}

/// One direction: the random source, the rate limiter and the delivery heap.
pub(crate) struct Link<T> {
    rng: StdRng,
    bucket: Option<TokenBucket>,
    heap: BinaryHeap<Scheduled<T>>,
    seq: u64,
    bytes: usize,
}

impl<T> Link<T> {
    /// `rate` in bytes/s (0 = unlimited), `queue` in bytes for the rate limiter.
    pub(crate) fn new(seed: u64, rate: u64, queue: u64, now: Instant) -> Self {
        Link {
            rng: StdRng::seed_from_u64(seed),
            bucket: (rate > 0).then(|| TokenBucket::new(rate, queue, now)),
            heap: BinaryHeap::new(),
            seq: 0,
            bytes: 0,
        }
    }

    /// Offers a `len`-byte packet arriving at `now`; queues it unless it is lost or dropped.
    pub(crate) fn offer(&mut self, now: Instant, len: usize, item: T, p: &Params) -> Verdict {
        if self.rng.random::<f64>() < p.loss {
            return Verdict::Lost;
        }
        if self.heap.len() >= MAX_PACKETS || self.bytes.saturating_add(len) > MAX_BYTES {
            return Verdict::QueueFull;
        }
        let depart = match self.bucket.as_mut() {
            Some(bucket) => match bucket.admit(now, len) {
                Some(t) => t,
                None => return Verdict::QueueFull,
            },
            None => now,
        };
        let mut delay = self.jittered(p.delay, p.jitter);
        let reordered = p.reorder > 0.0 && self.rng.random::<f64>() < p.reorder;
        if reordered {
            delay = delay.saturating_add(p.delay / 2 + Duration::from_millis(1));
        }
        let at = depart.checked_add(delay).unwrap_or(depart);
        self.seq += 1;
        self.bytes += len;
        self.heap.push(Scheduled {
            at,
            seq: self.seq,
            len,
            item,
        });
        Verdict::Scheduled { at, reordered }
    }

    fn jittered(&mut self, delay: Duration, jitter: Duration) -> Duration {
        if jitter.is_zero() {
            return delay;
        }
        let j = i128::try_from(jitter.as_nanos()).unwrap_or(i128::MAX / 4);
        let offset = self.rng.random_range(-j..=j);
        let total = i128::try_from(delay.as_nanos()).unwrap_or(i128::MAX / 4) + offset;
        Duration::from_nanos(u64::try_from(total.max(0)).unwrap_or(u64::MAX))
    }

    /// When the earliest queued packet is due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|s| s.at)
    }

    /// Removes and returns the earliest packet if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<T> {
        if self.heap.peek()?.at > now {
            return None;
        }
        let s = self.heap.pop()?;
        self.bytes -= s.len;
        Some(s.item)
    }

    /// Packets waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn params(delay_ms: u32) -> Params {
        Params {
            delay: MS * delay_ms,
            jitter: Duration::ZERO,
            loss: 0.0,
            reorder: 0.0,
        }
    }

    fn drain(link: &mut Link<u32>, now: Instant) -> Vec<u32> {
        std::iter::from_fn(|| link.pop_due(now)).collect()
    }

    #[test]
    fn delay_orders_by_time_then_fifo() {
        let t0 = Instant::now();
        let mut link = Link::new(1, 0, 0, t0);
        assert_eq!(link.next_deadline(), None);
        for i in 0..5 {
            link.offer(t0, 100, i, &params(10));
        }
        link.offer(t0, 100, 99, &params(5));
        assert_eq!(link.next_deadline(), Some(t0 + 5 * MS));
        assert!(link.pop_due(t0 + 4 * MS).is_none());
        assert_eq!(drain(&mut link, t0 + 5 * MS), vec![99]);
        assert_eq!(drain(&mut link, t0 + 10 * MS), vec![0, 1, 2, 3, 4]);
        assert_eq!(link.len(), 0);
        assert_eq!(link.bytes, 0);
    }

    #[test]
    fn loss_extremes() {
        let t0 = Instant::now();
        let mut link = Link::new(2, 0, 0, t0);
        let all = Params {
            loss: 1.0,
            ..params(0)
        };
        assert!((0..1000).all(|i| link.offer(t0, 10, i, &all) == Verdict::Lost));
        let none = params(0);
        assert!((0..1000).all(|i| link.offer(t0, 10, i, &none) != Verdict::Lost));
    }

    #[test]
    fn loss_rate_is_roughly_right_and_seeded() {
        let t0 = Instant::now();
        let p = Params {
            loss: 0.1,
            ..params(0)
        };
        let run = |seed| {
            let mut link = Link::new(seed, 0, 0, t0);
            (0..10_000)
                .map(|i| link.offer(t0, 1, i, &p) == Verdict::Lost)
                .collect::<Vec<_>>()
        };
        let a = run(42);
        assert_eq!(a, run(42), "same seed, same draws");
        let lost = a.iter().filter(|l| **l).count();
        assert!((800..1200).contains(&lost), "lost {lost} of 10000 at 10%");
    }

    #[test]
    fn jitter_stays_in_bounds_and_clamps() {
        let t0 = Instant::now();
        let mut link = Link::new(3, 0, 0, t0);
        let p = Params {
            jitter: 5 * MS,
            ..params(10)
        };
        for i in 0..1000 {
            let Verdict::Scheduled { at, .. } = link.offer(t0, 1, i, &p) else {
                panic!("dropped");
            };
            assert!(at >= t0 + 5 * MS && at <= t0 + 15 * MS);
        }
        let p = Params {
            jitter: 50 * MS,
            ..params(1)
        };
        for i in 0..1000 {
            let Verdict::Scheduled { at, .. } = link.offer(t0, 1, i, &p) else {
                panic!("dropped");
            };
            assert!(at >= t0 && at <= t0 + 51 * MS);
        }
    }

    #[test]
    fn reordered_packets_wait_extra() {
        let t0 = Instant::now();
        let mut link = Link::new(4, 0, 0, t0);
        let p = Params {
            reorder: 1.0,
            ..params(20)
        };
        let v = link.offer(t0, 1, 0, &p);
        assert_eq!(
            v,
            Verdict::Scheduled {
                at: t0 + 31 * MS,
                reordered: true
            }
        );
        // A later, normal packet overtakes it.
        link.offer(t0 + MS, 1, 1, &params(20));
        assert_eq!(drain(&mut link, t0 + 40 * MS), vec![1, 0]);
    }

    #[test]
    fn token_bucket_paces_and_tail_drops() {
        let t0 = Instant::now();
        // 1 MB/s, burst 16 KiB, queue 32 KiB: 48 KiB fit, then tail-drop.
        let mut link = Link::new(5, 1_000_000, 32 << 10, t0);
        let mut last = t0;
        let mut sent = 0;
        for i in 0..100 {
            match link.offer(t0, 1024, i, &params(0)) {
                Verdict::Scheduled { at, .. } => {
                    assert!(at >= last);
                    last = at;
                    sent += 1;
                }
                Verdict::QueueFull => break,
                Verdict::Lost => panic!("no loss configured"),
            }
        }
        assert_eq!(sent, 48);
        // 32 KiB of debt at 1 MB/s is ~32.8 ms.
        let debt = last.duration_since(t0);
        assert!(debt > 32 * MS && debt < 34 * MS, "{debt:?}");
        assert_eq!(link.offer(t0, 1024, 0, &params(0)), Verdict::QueueFull);
        // After the queue drains, packets pass again.
        assert!(matches!(
            link.offer(t0 + 40 * MS, 1024, 0, &params(0)),
            Verdict::Scheduled { .. }
        ));
    }

    #[test]
    fn heap_is_bounded() {
        let t0 = Instant::now();
        let mut link = Link::new(6, 0, 0, t0);
        for i in 0..MAX_PACKETS {
            assert_ne!(link.offer(t0, 1, i as u32, &params(1)), Verdict::QueueFull);
        }
        assert_eq!(link.offer(t0, 1, 0, &params(1)), Verdict::QueueFull);
        let mut big = Link::new(6, 0, 0, t0);
        assert_eq!(
            big.offer(t0, MAX_BYTES + 1, 0, &params(1)),
            Verdict::QueueFull
        );
    }
}
