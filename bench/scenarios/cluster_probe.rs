//! The key-write lag probe for cluster lanes: PUBLISH travels over the cluster bus, not the
//! replication stream, so the probe writes `HSET <tag>lag:<seq>:<ns> f 1` on the shard's
//! master every `every` and SUBSCRIBEs to `__keyevent@0__:hset` on the far replica (keyspace
//! events enabled there with `CONFIG SET notify-keyspace-events Eh`; a replica fires them for
//! the commands its master streams). The load writes only SETs, so only probes arrive.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::client::Client;
use crate::harness::now_ns;
use crate::probe::read_messages;

pub struct KeyProber {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    publisher: std::thread::JoinHandle<Result<u64>>,
    subscriber: std::thread::JoinHandle<Vec<(u128, f64)>>,
}

/// One probe sample: when it was written (bench clock, ns) and its lag (ms).
pub type Sample = (u128, f64);

impl KeyProber {
    /// Probes the lane whose master is `master` (keys under hash tag `tag`) at the far replica
    /// `far`, every `every`.
    pub fn start(master: u16, tag: &str, far: u16, every: Duration) -> Result<KeyProber> {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        Client::connect(far)?.cmd(&["CONFIG", "SET", "notify-keyspace-events", "Eh"])?;
        let mut sub = Client::connect(far)?;
        sub.cmd(&["SUBSCRIBE", "__keyevent@0__:hset"])?;
        sub.sock
            .set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut publ = Client::connect(master)?;
        let (st, tag) = (stop.clone(), tag.to_string());
        let publisher = std::thread::spawn(move || {
            let mut seq = 0u64;
            while !st.load(Ordering::Relaxed) {
                let key = format!("{tag}lag:{seq}:{}", now_ns());
                publ.cmd(&["HSET", &key, "f", "1"])?;
                seq += 1;
                std::thread::sleep(every);
            }
            Ok(seq)
        });
        let dn = done.clone();
        let subscriber = std::thread::spawn(move || {
            let mut got = Vec::new();
            read_messages(&mut sub, &dn, |s, now| {
                // The key is `<tag>lag:<seq>:<ns>`: the write time is its last part.
                if let Some(t) = s.rsplit(':').next().and_then(|t| t.parse::<u128>().ok()) {
                    got.push((t, now.saturating_sub(t) as f64 / 1e6));
                }
            });
            got
        });
        Ok(KeyProber {
            stop,
            done,
            publisher,
            subscriber,
        })
    }

    /// Stops writing, waits up to `grace` for the last samples; the samples (write time, lag
    /// ms) in write order, and how many never arrived.
    pub fn finish(self, grace: Duration) -> Result<(Vec<Sample>, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        let sent = match self.publisher.join() {
            Ok(r) => r?,
            Err(_) => bail!("the probe writer panicked"),
        };
        std::thread::sleep(grace);
        self.done.store(true, Ordering::Relaxed);
        let Ok(mut got) = self.subscriber.join() else {
            bail!("the probe reader panicked");
        };
        got.sort_by_key(|s| s.0);
        let missing = sent.saturating_sub(got.len() as u64);
        Ok((got, missing))
    }
}

/// The lags (ms) of `samples`, sorted, for [`crate::results::rec_lag`].
pub fn sorted_lags(samples: &[Sample]) -> Vec<f64> {
    let mut l: Vec<f64> = samples.iter().map(|s| s.1).collect();
    l.sort_by(f64::total_cmp);
    l
}
