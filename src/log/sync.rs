//! Group commit: a background thread fdatasyncs whatever segment bytes accumulated, by policy,
//! and publishes the durable offset. A failed fsync ends the process (exit 74).

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::FsyncPolicy;

/// Process exit code for a failed fsync (EX_IOERR).
pub(crate) const FSYNC_FAILED_EXIT: i32 = 74;

struct Dirty {
    file: Arc<File>,
    path: PathBuf,
}

#[derive(Default)]
struct SyncState {
    dirty: Vec<Dirty>,
    /// Highest offset written to a file (all of it in `dirty` files or already synced).
    written: u64,
    /// Bumped on a new epoch so an in-flight sync of old files cannot publish.
    gen: u64,
    requested: bool,
    shutdown: bool,
}

/// Shared between the log and its sync thread.
pub(crate) struct SyncCore {
    policy: FsyncPolicy,
    state: Mutex<SyncState>,
    cv: Condvar,
    /// Serialises whole sync passes (thread vs. `close`).
    pass: Mutex<()>,
    pub durable_tx: watch::Sender<u64>,
    /// Called with the duration of every sync pass that fsynced something (for metrics).
    pub observer: std::sync::OnceLock<Box<dyn Fn(std::time::Duration) + Send + Sync>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn fatal(path: &std::path::Path, err: &std::io::Error) -> ! {
    tracing::error!(path = %path.display(), error = %err, "fsync failed; data on disk may be lost, exiting");
    std::process::exit(FSYNC_FAILED_EXIT)
}

impl SyncCore {
    /// A core whose durable offset starts at `durable` (== written).
    pub fn new(policy: FsyncPolicy, durable: u64) -> Arc<SyncCore> {
        let (durable_tx, _) = watch::channel(durable);
        Arc::new(SyncCore {
            policy,
            state: Mutex::new(SyncState {
                written: durable,
                ..SyncState::default()
            }),
            cv: Condvar::new(),
            pass: Mutex::new(()),
            durable_tx,
            observer: std::sync::OnceLock::new(),
        })
    }

    /// Start the background thread.
    pub fn spawn(self: &Arc<Self>) -> std::io::Result<()> {
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("georelay-log-sync".into())
            .spawn(move || me.run())
            .map(|_| ())
    }

    /// Record that bytes up to `head` were written into `file`.
    pub fn note_write(&self, file: &Arc<File>, path: &std::path::Path, head: u64) {
        let mut st = lock(&self.state);
        if !st.dirty.last().is_some_and(|d| Arc::ptr_eq(&d.file, file)) {
            st.dirty.push(Dirty {
                file: Arc::clone(file),
                path: path.to_path_buf(),
            });
        }
        st.written = head;
        if self.policy == FsyncPolicy::Always {
            self.cv.notify_all();
        }
    }

    /// Ask for a sync pass now, whatever the policy.
    pub fn request(&self) {
        lock(&self.state).requested = true;
        self.cv.notify_all();
    }

    /// A new epoch: forget old files; everything up to `offset` is durable (snapshot fsynced).
    pub fn reset(&self, offset: u64) {
        let mut st = lock(&self.state);
        st.gen += 1;
        st.dirty.clear();
        st.written = offset;
        self.durable_tx.send_replace(offset);
    }

    pub fn shutdown(&self) {
        lock(&self.state).shutdown = true;
        self.cv.notify_all();
    }

    /// One sync pass, in the caller's thread.
    pub fn sync_now(&self) {
        let _pass = lock(&self.pass);
        let (dirty, target, gen) = {
            let mut st = lock(&self.state);
            (std::mem::take(&mut st.dirty), st.written, st.gen)
        };
        let started = Instant::now();
        for d in &dirty {
            let res = if crate::failpoint::hit("fsync") {
                Err(std::io::Error::other("injected by failpoint fsync"))
            } else {
                d.file.sync_data()
            };
            if let Err(e) = res {
                fatal(&d.path, &e);
            }
        }
        if !dirty.is_empty() {
            if let Some(observe) = self.observer.get() {
                observe(started.elapsed());
            }
        }
        let st = lock(&self.state);
        if st.gen == gen {
            self.durable_tx.send_if_modified(|d| {
                let changed = *d != target;
                *d = target;
                changed
            });
        }
    }

    fn run(self: Arc<Self>) {
        let mut last = Instant::now();
        loop {
            let shutdown = {
                let mut st = lock(&self.state);
                loop {
                    if st.requested || st.shutdown {
                        break;
                    }
                    match self.policy {
                        FsyncPolicy::Always if !st.dirty.is_empty() => break,
                        FsyncPolicy::Always | FsyncPolicy::No => {
                            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
                        }
                        FsyncPolicy::EverySec => {
                            let deadline = last + Duration::from_secs(1);
                            let now = Instant::now();
                            if now >= deadline {
                                break;
                            }
                            st = self
                                .cv
                                .wait_timeout(st, deadline - now)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                        }
                    }
                }
                st.requested = false;
                st.shutdown
            };
            last = Instant::now();
            self.sync_now();
            if shutdown {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_now_publishes_written_and_reset_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let file = Arc::new(File::create(&path).expect("create"));
        let core = SyncCore::new(FsyncPolicy::No, 10);
        let rx = core.durable_tx.subscribe();
        core.note_write(&file, &path, 50);
        assert_eq!(*rx.borrow(), 10);
        core.sync_now();
        assert_eq!(*rx.borrow(), 50);
        core.reset(5);
        assert_eq!(*rx.borrow(), 5);
        core.sync_now();
        assert_eq!(*rx.borrow(), 5);
    }

    #[tokio::test]
    async fn request_wakes_thread_under_policy_no() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let file = Arc::new(File::create(&path).expect("create"));
        let core = SyncCore::new(FsyncPolicy::No, 0);
        core.spawn().expect("spawn");
        let mut rx = core.durable_tx.subscribe();
        core.note_write(&file, &path, 7);
        core.request();
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|d| *d == 7))
            .await
            .expect("durable did not reach 7")
            .expect("sender alive");
        core.shutdown();
    }
}
