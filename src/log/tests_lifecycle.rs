//! Lifecycle tests of [`Log`]: retention, epochs, snapshot needs, locking, durability,
//! interrupted epoch switches and corruption in the active segment.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;

use super::tests::cfg;
use super::*;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn snapshot(log: &Log, replid: &str, offset: u64) -> SnapshotMeta {
    let mut w = log.begin_snapshot().expect("begin snapshot");
    w.write(b"REDIS0011-fake-rdb").expect("write rdb");
    w.finish(replid, offset, 11, None).expect("finish")
}

fn names(dir: &Path, sub: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join(sub))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Append `n` records of 1000 bytes (filled with the record number) at timestamp `ts`.
fn thousands(log: &Log, n: u8, ts: u64) {
    for i in 0..n {
        log.append(Bytes::from(vec![i; 1000]), ts).expect("append");
    }
}

#[test]
fn retention_by_size_keeps_the_newest_snapshot_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = cfg(dir.path());
    c.segment_bytes = 4 * 1024;
    c.max_bytes = 16 * 1024;
    let log = Log::open(c).expect("open");
    log.start_epoch(snapshot(&log, A, 0)).expect("epoch");
    thousands(&log, 100, 1);
    log.maintain().expect("maintain");
    let st = log.status();
    assert_eq!(st.first_valid, 1, "the snapshot at 0 pins everything");
    assert!(st.segment_count > 20);
    assert!(log.needs_snapshot(), "retention is pinned by the snapshot");
    // A newer snapshot lets retention go down to max_bytes, never past the snapshot.
    log.add_snapshot(snapshot(&log, A, 90_000)).expect("add");
    let st = log.status();
    assert!(
        st.first_valid > 1 && st.first_valid <= 90_001,
        "{}",
        st.first_valid
    );
    let seg_bytes = st.disk_bytes - 18;
    assert!(seg_bytes <= 16 * 1024 + 4 * 1024 + 1024, "{seg_bytes}");
    assert_eq!(st.newest_snapshot.map(|s| s.offset), Some(90_000));
    assert_eq!(
        names(dir.path(), "snapshots").len(),
        2,
        "old snapshot deleted"
    );
    assert!(!log.needs_snapshot());
    assert_eq!(
        log.decide(A, 50),
        PsyncDecision::Full {
            reason: FullReason::OffsetOutOfRange
        }
    );
    let mut r = log.reader(90_001).expect("snapshot range readable");
    let c = r.try_next(1_000_000).expect("read").expect("chunk");
    assert_eq!(c.offset, 90_001);
}

#[test]
fn retention_by_age_and_snapshot_after_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = cfg(dir.path());
    c.segment_bytes = 4 * 1024;
    c.max_age = Duration::from_secs(60);
    c.snapshot_after_bytes = 50_000;
    let log = Log::open(c).expect("open");
    log.start_epoch(snapshot(&log, A, 0)).expect("epoch");
    thousands(&log, 20, 1); // ancient origin timestamps
    log.add_snapshot(snapshot(&log, A, 20_000)).expect("add");
    let now = fsutil::now_us();
    thousands(&log, 10, now);
    log.maintain().expect("maintain");
    let st = log.status();
    assert!(
        st.first_valid > 12_000 && st.first_valid <= 20_001,
        "{}",
        st.first_valid
    );
    assert!(!log.needs_snapshot());
    thousands(&log, 60, now);
    assert!(
        log.needs_snapshot(),
        "more than snapshot_after_bytes since the snapshot"
    );
}

#[tokio::test]
async fn start_epoch_deletes_old_files_and_old_readers_get_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(cfg(dir.path())).expect("open");
    log.start_epoch(snapshot(&log, A, 0)).expect("epoch 1");
    thousands(&log, 40, 1);
    let mut epoch_rx = log.subscribe_epoch();
    assert_eq!(*epoch_rx.borrow_and_update(), 1);
    let mut tail = log.reader(40_001).expect("caught-up reader");
    let mut old = log.reader(5).expect("old reader");
    let waiting = tokio::spawn(async move { tail.next(100).await });
    let snap = snapshot(&log, B, 7_000_000);
    log.start_epoch(snap).expect("epoch 2");
    let res = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("waiting reader woke")
        .expect("join");
    assert!(matches!(res, Err(LogError::Gone { .. })));
    assert!(matches!(old.try_next(10), Err(LogError::Gone { .. })));
    assert!(epoch_rx.has_changed().expect("sender alive"));
    assert_eq!(*epoch_rx.borrow_and_update(), 2);
    let st = log.status();
    assert_eq!(
        (st.epoch, st.head, st.first_valid, st.segment_count),
        (2, 7_000_000, 7_000_001, 0)
    );
    assert_eq!(
        st.history,
        vec![HistoryEntry {
            replid: B.into(),
            start: 7_000_001
        }]
    );
    assert!(names(dir.path(), "segments").is_empty());
    assert_eq!(
        names(dir.path(), "snapshots"),
        vec![
            "00000002-00000000000007000000.json",
            "00000002-00000000000007000000.rdb"
        ]
    );
    log.append(Bytes::from_static(b"new"), 1).expect("append");
    assert_eq!(
        names(dir.path(), "segments"),
        vec!["00000002-00000000000007000001.seg"]
    );
    log.switch_replid(A).expect("switch");
    assert!(
        epoch_rx.has_changed().expect("sender alive"),
        "switch notifies"
    );
}

#[test]
fn interrupted_epoch_switch_is_rolled_back_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = Log::open(cfg(dir.path())).expect("open");
        log.start_epoch(snapshot(&log, A, 0)).expect("epoch");
        thousands(&log, 3, 1);
        // A snapshot renamed into epoch 2 whose state.json was never written.
        let s = snapshot(&log, B, 99);
        let snaps = dir.path().join("snapshots");
        std::fs::rename(&s.path, snaps.join("00000002-00000000000000000099.rdb")).expect("mv");
        let mut m = s.clone();
        m.epoch = 2;
        snapshot::write_meta(&snaps, &m).expect("meta");
        std::fs::write(snaps.join("junk.rdb.tmp"), b"x").expect("tmp");
    }
    let log = Log::open(cfg(dir.path())).expect("reopen");
    let st = log.status();
    assert_eq!((st.epoch, st.head), (1, 3000));
    assert_eq!(
        names(dir.path(), "snapshots"),
        vec![
            "00000001-00000000000000000000.json",
            "00000001-00000000000000000000.rdb"
        ]
    );
}

#[test]
fn second_open_of_the_same_dir_is_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(cfg(dir.path())).expect("open");
    match Log::open(cfg(dir.path())) {
        Err(e @ LogError::Locked { .. }) => {
            assert!(
                e.to_string().contains("another georelay agent holds"),
                "{e}"
            );
            assert!(
                e.to_string().contains(&dir.path().display().to_string()),
                "{e}"
            );
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("second open succeeded"),
    }
    drop(log);
    Log::open(cfg(dir.path())).expect("open after the first is dropped");
}

async fn wait_durable(log: &Log, target: u64) {
    let mut rx = log.subscribe_durable();
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|d| *d >= target))
        .await
        .expect("durable reached head before the deadline")
        .expect("sender alive");
}

#[tokio::test]
async fn fsync_always_makes_durable_reach_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = cfg(dir.path());
    c.fsync = FsyncPolicy::Always;
    let log = Log::open(c).expect("open");
    log.start_epoch(snapshot(&log, A, 10)).expect("epoch");
    assert_eq!(log.status().durable, 10);
    thousands(&log, 50, 1);
    wait_durable(&log, 50_010).await;
    assert_eq!(log.status().durable, 50_010);
}

#[tokio::test]
async fn everysec_and_no_sync_on_request() {
    for policy in [FsyncPolicy::EverySec, FsyncPolicy::No] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = cfg(dir.path());
        c.fsync = policy;
        let log = Log::open(c).expect("open");
        log.start_epoch(snapshot(&log, A, 0)).expect("epoch");
        thousands(&log, 5, 1);
        log.request_sync();
        wait_durable(&log, 5000).await;
        thousands(&log, 1, 1);
        log.close().expect("close");
        assert_eq!(
            log.status().durable,
            6000,
            "{policy:?}: close syncs everything"
        );
    }
}

#[test]
fn corruption_at_the_end_of_the_active_segment_moves_appends_to_a_new_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(cfg(dir.path())).expect("open");
    log.start_epoch(snapshot(&log, A, 0)).expect("epoch");
    thousands(&log, 3, 1);
    let seg = dir
        .path()
        .join("segments")
        .join("00000001-00000000000000000001.seg");
    let mut b = std::fs::read(&seg).expect("read");
    b[2 * 1024 + 30] ^= 1;
    std::fs::write(&seg, b).expect("write");
    let mut r = log.reader(2001).expect("reader");
    assert!(matches!(
        r.try_next(100),
        Err(LogError::Corrupt { offset: 2001, .. })
    ));
    assert_eq!(log.status().first_valid, 3001);
    log.append(Bytes::from_static(b"after"), 2).expect("append");
    // Rotation ran retention, which dropped the wholly unusable old segment.
    assert_eq!(
        names(dir.path(), "segments"),
        vec!["00000001-00000000000000003001.seg"]
    );
    let mut r = log.reader(3001).expect("reader at barrier");
    let c = r.try_next(100).expect("read").expect("chunk");
    assert_eq!((c.offset, &c.data[..]), (3001, &b"after"[..]));
}

#[test]
fn the_rotation_seal_runs_without_the_log_mutex() {
    use std::sync::mpsc;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = cfg(dir.path());
    c.segment_bytes = 4 * 1024;
    c.fsync = FsyncPolicy::Always;
    let log = Log::open(c).expect("open");
    log.start_epoch(snapshot(&log, A, 0)).expect("epoch");
    // Four records of 1000 + 24 bytes fill the 4 KiB segment: the fifth append rotates.
    thousands(&log, 4, 1);
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    *log.shared.seal_hook.lock().expect("hook") = Some(Box::new(move || {
        let _ = entered_tx.send(());
        // Bounded: a failing test must not leave the appender parked for ever.
        let _ = release_rx
            .lock()
            .expect("release")
            .recv_timeout(Duration::from_secs(30));
    }));
    let appender = {
        let log = log.clone();
        std::thread::spawn(move || log.append(Bytes::from(vec![9u8; 1000]), 2))
    };
    entered
        .recv_timeout(Duration::from_secs(10))
        .expect("the fifth append never started sealing the full segment");
    // While the seal is held, status and a reader get the mutex and see the sealed segment.
    let (seen_tx, seen) = mpsc::channel();
    let probe = {
        let log = log.clone();
        std::thread::spawn(move || {
            let st = log.status();
            let chunk = log.reader(1).and_then(|mut r| r.try_next(1 << 20));
            let _ = seen_tx.send((st.head, st.segment_count, chunk));
        })
    };
    let (head, segments, chunk) = seen
        .recv_timeout(Duration::from_secs(10))
        .expect("status/reader blocked while the old segment was being sealed");
    assert_eq!((head, segments), (4000, 1));
    let chunk = chunk.expect("read").expect("chunk");
    assert_eq!((chunk.offset, chunk.data.len()), (1, 4000));
    release.send(()).expect("release the seal");
    appender
        .join()
        .expect("appender thread")
        .expect("append after the seal");
    probe.join().expect("probe thread");
    *log.shared.seal_hook.lock().expect("hook") = None;
    let st = log.status();
    assert_eq!((st.head, st.segment_count), (5000, 2));
    let mut r = log.reader(4001).expect("reader");
    let c = r.try_next(1 << 20).expect("read").expect("chunk");
    assert_eq!((c.offset, &c.data[..]), (4001, &[9u8; 1000][..]));
}

/// Whether `fut` is still pending after one poll.
async fn pending_once(fut: impl std::future::Future) -> bool {
    tokio::select! {
        biased;
        _ = fut => false,
        _ = std::future::ready(()) => true,
    }
}

#[tokio::test]
async fn the_append_pipe_bounds_what_is_in_flight_by_count_and_by_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(cfg(dir.path())).expect("open");
    log.start_epoch(snapshot(&log, A, 0)).expect("epoch");
    // Hold the writer thread, so nothing queued behind this job completes.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let held = tokio::spawn({
        let log = log.clone();
        async move {
            log.on_writer(move |_| {
                let _ = started_tx.send(());
                let _ = release_rx.recv();
            })
            .await
        }
    });
    started_rx.await.expect("writer held");
    let kb = |b: u8| Bytes::from(vec![b; 1000]);
    // By bytes: one append larger than the bound is queued at once, a second one waits.
    let mut pipe = AppendPipe::new(&log, 100, 1500);
    pipe.push(Bytes::from(vec![1u8; 2000]), 1)
        .await
        .expect("first push does not wait");
    assert!(
        pending_once(pipe.push(kb(2), 1)).await,
        "a push beyond max_bytes waits for the writer"
    );
    assert_eq!(pipe.in_flight(), 2, "the waiting push was queued");
    // By count: depth 2 holds two, a third waits.
    let mut by_count = AppendPipe::new(&log, 2, usize::MAX);
    by_count.push(kb(3), 1).await.expect("1 of 2");
    by_count.push(kb(4), 1).await.expect("2 of 2");
    assert!(pending_once(by_count.push(kb(5), 1)).await);
    release_tx.send(()).expect("release the writer");
    held.await.expect("join").expect("held job ran");
    pipe.drain().await.expect("drain by bytes");
    by_count.drain().await.expect("drain by count");
    assert_eq!((pipe.in_flight(), by_count.in_flight()), (0, 0));
    assert_eq!(
        log.status().head,
        2000 + 4 * 1000,
        "every queued append written, once"
    );
    let mut r = log.reader(1).expect("reader");
    let mut all = Vec::new();
    while let Some(c) = r.try_next(1 << 20).expect("read") {
        all.extend_from_slice(&c.data);
    }
    let firsts: Vec<u8> = [0, 2000, 3000, 4000, 5000]
        .iter()
        .map(|&i| all[i])
        .collect();
    assert_eq!(firsts, [1, 2, 3, 4, 5], "in the order pushed");
}
