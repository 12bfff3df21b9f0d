//! The lag probe: PUBLISH on the origin, SUBSCRIBE on the far replica, lag per message.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use georelay::resp::Frame;

use crate::client::Client;
use crate::harness::now_ns;

/// Whether a read error is the read timeout (the subscriber then just polls its stop flag).
pub fn is_timeout(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>().is_some_and(|e| {
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    })
}

/// Reads the pub/sub messages of `sub` (subscribed, with a read timeout) until `done` or a
/// read error other than that timeout, giving `on` each payload and when it arrived (ns).
pub fn read_messages(sub: &mut Client, done: &AtomicBool, mut on: impl FnMut(&str, u128)) {
    while !done.load(Ordering::Relaxed) {
        match sub.read_frame() {
            Ok(Frame::Array(items)) => {
                let now = now_ns();
                if let Some(Frame::Bulk(p)) = items.get(2) {
                    on(&String::from_utf8_lossy(p), now);
                }
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => break,
        }
    }
}

/// PUBLISH on the origin every `every`, SUBSCRIBE on the far replica; lag per message.
pub struct Prober {
    pub stop: Arc<AtomicBool>,
    pub publisher: std::thread::JoinHandle<u64>,
    pub subscriber: std::thread::JoinHandle<Vec<(u64, f64)>>,
    pub done: Arc<AtomicBool>,
}

impl Prober {
    pub fn start(origin: u16, far: u16, every: Duration) -> Result<Prober> {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let mut sub = Client::connect(far)?;
        sub.cmd(&["SUBSCRIBE", "bench-lag"])?;
        sub.sock
            .set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut publ = Client::connect(origin)?;
        let st = stop.clone();
        let publisher = std::thread::spawn(move || {
            let mut seq = 0u64;
            while !st.load(Ordering::Relaxed) {
                let msg = format!("{seq}:{}", now_ns());
                if publ.cmd(&["PUBLISH", "bench-lag", &msg]).is_err() {
                    break;
                }
                seq += 1;
                std::thread::sleep(every);
            }
            seq
        });
        let dn = done.clone();
        let subscriber = std::thread::spawn(move || {
            let mut got = Vec::new();
            read_messages(&mut sub, &dn, |s, now| {
                if let Some((seq, t)) = s.split_once(':') {
                    let (seq, t): (u64, u128) = (seq.parse().unwrap_or(0), t.parse().unwrap_or(0));
                    got.push((seq, (now - t) as f64 / 1e6));
                }
            });
            got
        });
        Ok(Prober {
            stop,
            publisher,
            subscriber,
            done,
        })
    }

    /// Stops publishing, waits up to `grace` for the last messages; lag samples in ms, sorted,
    /// and how many never arrived.
    pub fn finish(self, grace: Duration) -> (Vec<f64>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.publisher.join().unwrap_or(0);
        std::thread::sleep(Duration::from_millis(50));
        let t0 = Instant::now();
        // the subscriber keeps reading until done; give in-flight messages time
        while t0.elapsed() < grace && !self.subscriber.is_finished() {
            std::thread::sleep(Duration::from_millis(20));
            // we cannot peek at its count; just wait the grace unless it is short
            if t0.elapsed() > Duration::from_millis(300) {
                break;
            }
        }
        self.done.store(true, Ordering::Relaxed);
        let got = self.subscriber.join().unwrap_or_default();
        let mut lags: Vec<f64> = got.iter().map(|x| x.1).collect();
        lags.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let missing = sent.saturating_sub(got.len() as u64);
        (lags, missing)
    }
}
