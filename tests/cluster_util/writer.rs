//! A background writer through the cluster client that remembers every acknowledged key.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{frame_text, wait_until};

use super::ClusterClient;

/// Writes keys through a [`ClusterClient`] on its own thread until stopped; pausable.
pub struct Writer {
    stop: Arc<AtomicBool>,
    /// Set by [`Writer::pause`]: the writer stops between writes and sets `idle`.
    pause: Arc<AtomicBool>,
    idle: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    acked: Arc<Mutex<BTreeSet<String>>>,
    handle: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Writer {
    pub fn start(seeds: Vec<u16>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        let (pause, idle) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (s, c, a) = (stop.clone(), count.clone(), acked.clone());
        let (p, id) = (pause.clone(), idle.clone());
        let handle = std::thread::spawn(move || {
            let mut client = ClusterClient::new(seeds);
            for i in 0..200_000u64 {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                // Paused: no write in flight until resumed (bounded by `stop`).
                while p.load(Ordering::Relaxed) && !s.load(Ordering::Relaxed) {
                    id.store(true, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
                id.store(false, Ordering::Relaxed);
                let key = format!("key:{i}");
                let reply = client.cmd(&["SET", &key, &format!("value-{i}")])?;
                if frame_text(&reply) != "OK" {
                    return Err(format!("SET {key}: {reply:?}"));
                }
                a.lock().unwrap().insert(key);
                c.fetch_add(1, Ordering::Relaxed);
                // At most ~500 writes/s, so the bound outlasts every test's faults.
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(())
        });
        Writer {
            stop,
            pause,
            idle,
            count,
            acked,
            handle: Some(handle),
        }
    }

    pub fn advance(&self, n: u64) {
        let target = self.count.load(Ordering::Relaxed) + n;
        wait_until(Duration::from_secs(90), "the writer makes progress", || {
            let done = self.handle.as_ref().is_none_or(|h| h.is_finished());
            assert!(
                !done || self.count.load(Ordering::Relaxed) >= target,
                "the writer stopped after {} writes (see finish() for its error)",
                self.count.load(Ordering::Relaxed)
            );
            self.count.load(Ordering::Relaxed) >= target
        });
    }

    /// Stops the writer between two writes; returns once no write is in flight.
    pub fn pause(&self) {
        self.pause.store(true, Ordering::Relaxed);
        wait_until(Duration::from_secs(30), "the writer pauses", || {
            self.idle.load(Ordering::Relaxed)
        });
    }

    pub fn resume(&self) {
        self.pause.store(false, Ordering::Relaxed);
    }

    pub fn finish(mut self) -> BTreeSet<String> {
        self.stop.store(true, Ordering::Relaxed);
        let r = self.handle.take().unwrap().join().expect("writer thread");
        r.expect("writes through the cluster client");
        self.acked.lock().unwrap().clone()
    }
}
