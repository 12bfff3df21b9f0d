//! Where the log's file work runs — never on a tokio worker. Each [`Log`] has a writer thread
//! (`georelay-log-w`) that runs its mutations in the order they are asked for: appends (with
//! the fsync that seals a segment at rotation and the retention deletes after it), replid
//! switches, new epochs, snapshot files and their registration. Readers' `pread`s, snapshot
//! reads and other one-off file work run on a small shared pool (`georelay-log-r`). Async
//! callers await the result; the group-commit thread (`georelay-log-sync`) is unchanged.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

use super::{Log, LogError, SnapshotMeta, SnapshotWriter};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Name of every log writer thread.
pub const WRITER_THREAD: &str = "georelay-log-w";
/// Name of the reader pool's threads.
pub const READER_THREAD: &str = "georelay-log-r";
/// Threads in the reader pool (reads are mostly of the page cache).
const READERS: usize = 2;

/// Runs each job to its end, a panic included (the caller then sees [`LogError::Stopped`]).
fn run_jobs(rx: impl Fn() -> Option<Job>) {
    while let Some(job) = rx() {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            tracing::error!("a log file job panicked");
        }
    }
}

/// One thread running jobs in the order they were queued.
pub(crate) struct Worker {
    tx: mpsc::Sender<Job>,
}

impl Worker {
    pub(crate) fn spawn(name: &str) -> std::io::Result<Worker> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run_jobs(|| rx.recv().ok()))?;
        Ok(Worker { tx })
    }

    fn submit(&self, job: Job) -> Result<(), LogError> {
        self.tx.send(job).map_err(|_| LogError::Stopped)
    }
}

/// The shared reader pool.
struct Pool {
    tx: mpsc::Sender<Job>,
}

fn pool() -> Result<&'static Pool, LogError> {
    static POOL: OnceLock<Option<Pool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..READERS {
            let rx = Arc::clone(&rx);
            let next = move || rx.lock().unwrap_or_else(|p| p.into_inner()).recv().ok();
            match std::thread::Builder::new()
                .name(format!("{READER_THREAD}-{i}"))
                .spawn(move || run_jobs(next))
            {
                Ok(_) => started += 1,
                Err(e) => tracing::error!("cannot start a log reader thread: {e}"),
            }
        }
        (started > 0).then_some(Pool { tx })
    })
    .as_ref()
    .ok_or(LogError::Stopped)
}

/// Queues `f` on the reader pool without waiting.
pub(crate) fn submit_read(f: impl FnOnce() + Send + 'static) -> Result<(), LogError> {
    pool()?.tx.send(Box::new(f)).map_err(|_| LogError::Stopped)
}

/// Runs `f` on `queue` and awaits what it returns.
async fn on<T: Send + 'static>(
    queue: impl FnOnce(Job) -> Result<(), LogError>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LogError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    queue(Box::new(move || {
        let _ = tx.send(f());
    }))?;
    rx.await.map_err(|_| LogError::Stopped)
}

/// Runs file work `f` (a snapshot read, a file check) on the reader pool, off the tokio
/// workers, and awaits its result.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LogError> {
    on(|job| pool()?.tx.send(job).map_err(|_| LogError::Stopped), f).await
}

impl Log {
    /// [`Log::open`] (recovery reads every segment) on the reader pool, off the tokio threads.
    pub async fn open_async(cfg: super::LogConfig) -> Result<Log, LogError> {
        blocking(move || Log::open(cfg)).await?
    }

    /// Runs `f` on this log's writer thread, after everything asked for before, and awaits it.
    pub async fn on_writer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Log) -> T + Send + 'static,
    ) -> Result<T, LogError> {
        let log = self.clone();
        on(|job| self.shared.writer.submit(job), move || f(&log)).await
    }

    /// Runs `f` on the writer thread and blocks this (non-async) thread until it is done.
    pub(crate) fn on_writer_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Log) -> T + Send + 'static,
    ) -> Result<T, LogError> {
        let log = self.clone();
        let (tx, rx) = mpsc::sync_channel(1);
        self.shared.writer.submit(Box::new(move || {
            let r = f(&log);
            // The clone goes before the caller wakes: dropping the caller's last handle must
            // release the directory lock at once (a reopen right after would see it held).
            drop(log);
            let _ = tx.send(r);
        }))?;
        rx.recv().map_err(|_| LogError::Stopped)
    }

    /// [`Log::append`] on the writer thread: returns once the bytes are written (what an ACK
    /// reports), before they are fsynced.
    pub async fn append_async(&self, data: Bytes, timestamp_us: u64) -> Result<(), LogError> {
        self.on_writer(move |l| l.append(data, timestamp_us))
            .await?
    }

    /// [`Log::switch_replid`] on the writer thread.
    pub async fn switch_replid_async(&self, replid: String) -> Result<(), LogError> {
        self.on_writer(move |l| l.switch_replid(&replid)).await?
    }

    /// [`Log::start_epoch`] on the writer thread.
    pub async fn start_epoch_async(&self, snap: SnapshotMeta) -> Result<(), LogError> {
        self.on_writer(move |l| l.start_epoch(snap)).await?
    }

    /// [`Log::add_snapshot`] on the writer thread.
    pub async fn add_snapshot_async(&self, snap: SnapshotMeta) -> Result<(), LogError> {
        self.on_writer(move |l| l.add_snapshot(snap)).await?
    }

    /// [`Log::maintain`] (retention) on the writer thread.
    pub async fn maintain_async(&self) -> Result<(), LogError> {
        self.on_writer(|l| l.maintain_here()).await?
    }

    /// [`Log::begin_snapshot`] on the writer thread.
    pub async fn begin_snapshot_async(&self) -> Result<SnapshotWriter, LogError> {
        self.on_writer(|l| l.begin_snapshot()).await?
    }
}

/// Appends queued on the log's writer thread without waiting for each: the next frame is read
/// from the network while the last one is written. At most `depth` appends, and `max_bytes`
/// of data (always at least one append), are in flight; once one fails, the ones queued after
/// it write nothing (each would land at the wrong offset), and the failure is what
/// [`AppendPipe::drain`] or the next push returns.
pub struct AppendPipe {
    log: Log,
    depth: usize,
    max_bytes: usize,
    /// Bytes of the appends in `pending`.
    bytes: usize,
    failed: Arc<std::sync::atomic::AtomicBool>,
    pending: std::collections::VecDeque<Pending>,
}

/// One queued append: its completion and its size.
type Pending = (tokio::sync::oneshot::Receiver<Result<(), LogError>>, usize);

impl AppendPipe {
    pub fn new(log: &Log, depth: usize, max_bytes: usize) -> AppendPipe {
        AppendPipe {
            log: log.clone(),
            depth: depth.max(1),
            max_bytes,
            bytes: 0,
            failed: Arc::default(),
            pending: Default::default(),
        }
    }

    /// Queues [`Log::append`] of `data`; waits only while more than `depth` appends or
    /// `max_bytes` are in flight.
    pub async fn push(&mut self, data: Bytes, timestamp_us: u64) -> Result<(), LogError> {
        use std::sync::atomic::Ordering;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let len = data.len();
        let (log, failed) = (self.log.clone(), Arc::clone(&self.failed));
        self.log.shared.writer.submit(Box::new(move || {
            let r = if failed.load(Ordering::Acquire) {
                Err(LogError::Stopped)
            } else {
                log.append(data, timestamp_us)
            };
            if r.is_err() {
                failed.store(true, Ordering::Release);
            }
            drop(log);
            let _ = tx.send(r);
        }))?;
        self.pending.push_back((rx, len));
        self.bytes += len;
        while self.pending.len() > self.depth
            || (self.bytes > self.max_bytes && self.pending.len() > 1)
        {
            self.pop().await?;
        }
        Ok(())
    }

    /// Waits for the oldest append; it stays queued if this wait is cancelled.
    async fn pop(&mut self) -> Result<(), LogError> {
        let Some((rx, _)) = self.pending.front_mut() else {
            return Ok(());
        };
        let r = rx.await;
        if let Some((_, len)) = self.pending.pop_front() {
            self.bytes -= len;
        }
        r.map_err(|_| LogError::Stopped)?
    }

    /// Waits until every queued append is written; the first failure, if any.
    pub async fn drain(&mut self) -> Result<(), LogError> {
        while !self.pending.is_empty() {
            self.pop().await?;
        }
        Ok(())
    }

    /// Forgets the appends already written, from the oldest; the first failure, if any.
    pub fn reap(&mut self) -> Result<(), LogError> {
        use tokio::sync::oneshot::error::TryRecvError;
        while let Some((rx, len)) = self.pending.front_mut() {
            let len = *len;
            let r = match rx.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => Err(LogError::Stopped),
            };
            self.pending.pop_front();
            self.bytes -= len;
            r?;
        }
        Ok(())
    }

    /// Appends queued and not yet known to be written (as of the last [`AppendPipe::reap`]).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }
}

/// A [`SnapshotWriter`] whose file work (writes, the final fsync and rename) runs on the log's
/// writer thread. A write cut short by a dropped future loses the file: later calls fail.
pub struct AsyncSnapshot {
    log: Log,
    inner: Option<SnapshotWriter>,
    written: u64,
}

fn lost() -> LogError {
    LogError::Stopped
}

impl AsyncSnapshot {
    /// Starts receiving an RDB into a temp file under `snapshots/`.
    pub async fn begin(log: &Log) -> Result<AsyncSnapshot, LogError> {
        let inner = log.on_writer(|l| l.begin_snapshot()).await??;
        Ok(AsyncSnapshot {
            log: log.clone(),
            written: inner.written(),
            inner: Some(inner),
        })
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    async fn with<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut SnapshotWriter) -> Result<T, LogError> + Send + 'static,
    ) -> Result<T, LogError> {
        let mut w = self.inner.take().ok_or_else(lost)?;
        let (w, r) = self
            .log
            .on_writer(move |_| {
                let r = f(&mut w);
                (w, r)
            })
            .await?;
        self.written = w.written();
        self.inner = Some(w);
        r
    }

    /// Appends `data` to the file.
    pub async fn write(&mut self, data: Bytes) -> Result<(), LogError> {
        self.with(move |w| w.write(&data)).await
    }

    /// Drops the last `n` bytes (a `$EOF:` transfer's end mark).
    pub async fn truncate_tail(&mut self, n: u64) -> Result<(), LogError> {
        self.with(move |w| w.truncate_tail(n)).await
    }

    /// Fsyncs and names the snapshot (see [`SnapshotWriter::finish`]).
    pub async fn finish(
        mut self,
        replid: String,
        offset: u64,
        rdb_version: u32,
        crc_ok: Option<bool>,
    ) -> Result<SnapshotMeta, LogError> {
        let w = self.inner.take().ok_or_else(lost)?;
        self.log
            .on_writer(move |_| w.finish(&replid, offset, rdb_version, crc_ok))
            .await?
    }
}

/// A file read in chunks on the reader pool (a snapshot sent to a replica or an agent). A read
/// cut short by a dropped future loses the file: later reads fail.
pub struct PooledFile {
    file: Option<std::fs::File>,
}

fn stopped_io(e: LogError) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl PooledFile {
    /// Opens `path` positioned at byte `from`.
    pub async fn open(path: &std::path::Path, from: u64) -> std::io::Result<PooledFile> {
        let path = path.to_path_buf();
        let file = blocking(move || {
            use std::io::Seek;
            let mut f = std::fs::File::open(&path)?;
            if from > 0 {
                f.seek(std::io::SeekFrom::Start(from))?;
            }
            Ok::<_, std::io::Error>(f)
        })
        .await
        .map_err(stopped_io)??;
        Ok(PooledFile { file: Some(file) })
    }

    /// Up to `max` bytes from where the last read ended; empty at the end of the file.
    pub async fn read(&mut self, max: usize) -> std::io::Result<Bytes> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| std::io::Error::other("file lost by a cancelled read"))?;
        let (file, r) = blocking(move || {
            use std::io::Read;
            let mut buf = vec![0u8; max];
            let r = file.read(&mut buf).map(|n| {
                buf.truncate(n);
                Bytes::from(buf)
            });
            (file, r)
        })
        .await
        .map_err(stopped_io)?;
        self.file = Some(file);
        r
    }
}
