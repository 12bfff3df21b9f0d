//! End-to-end tests of [`Log`] on temp directories: append/read, recovery, corruption,
//! PSYNC decisions, retention, epochs, locking and durability.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};

use super::*;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccccccccccccccccccccccccccc";

pub(crate) fn cfg(dir: &Path) -> LogConfig {
    LogConfig {
        dir: dir.to_path_buf(),
        segment_bytes: 16 * 1024,
        max_bytes: 1 << 40,
        max_age: Duration::from_secs(86_400 * 365),
        fsync: FsyncPolicy::No,
        snapshot_after_bytes: 1 << 40,
        keep_page_cache: false,
    }
}

fn snapshot(log: &Log, replid: &str, offset: u64) -> SnapshotMeta {
    let mut w = log.begin_snapshot().expect("begin snapshot");
    w.write(b"REDIS0011-fake-rdb").expect("write rdb");
    w.finish(replid, offset, 11, Some(true)).expect("finish")
}

fn start(log: &Log, replid: &str, offset: u64) {
    let s = snapshot(log, replid, offset);
    log.start_epoch(s).expect("start epoch");
}

/// Append random chunks; returns everything appended (index 0 = offset `base`).
fn fill(log: &Log, rng: &mut impl Rng, n: usize, max: usize) -> Vec<u8> {
    let mut all = Vec::new();
    for i in 0..n {
        let len = rng.random_range(1..=max);
        let chunk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        all.extend_from_slice(&chunk);
        log.append(Bytes::from(chunk), 1_000 + i as u64)
            .expect("append");
    }
    all
}

/// Read from `from` to head with chunks of at most `max`; checks chunk offsets.
fn read_to_head(log: &Log, from: u64, max: usize) -> Result<Vec<u8>, LogError> {
    let mut r = log.reader(from)?;
    let mut out = Vec::new();
    while let Some(c) = r.try_next(max)? {
        assert_eq!(c.offset, from + out.len() as u64);
        assert!(!c.data.is_empty() && c.data.len() <= max);
        out.extend_from_slice(&c.data);
    }
    assert_eq!(r.position(), log.status().head + 1);
    Ok(out)
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

fn flip_byte(path: &Path, pos: u64) {
    let mut b = std::fs::read(path).expect("read");
    b[pos as usize] ^= 0x55;
    std::fs::write(path, b).expect("write");
}

#[test]
fn append_and_read_back_across_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(cfg(dir.path())).expect("open");
    assert!(matches!(
        log.append(Bytes::from_static(b"x"), 1),
        Err(LogError::NoEpoch)
    ));
    assert!(matches!(log.reader(1), Err(LogError::NoEpoch)));
    start(&log, A, 1000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let all = fill(&log, &mut rng, 400, 3000);
    let st = log.status();
    assert_eq!(st.head, 1000 + all.len() as u64);
    assert!(
        st.segment_count > 10,
        "rotation happened: {}",
        st.segment_count
    );
    assert_eq!(log.current(), Some((A.to_string(), st.head)));
    for _ in 0..60 {
        let from = rng.random_range(1001..=st.head + 1);
        let max = rng.random_range(1..10_000);
        let got = read_to_head(&log, from, max).expect("read");
        assert_eq!(got, &all[(from - 1001) as usize..], "from {from} max {max}");
    }
    assert!(matches!(
        log.reader(1000),
        Err(LogError::Gone { offset: 1000 })
    ));
    assert!(matches!(
        log.reader(st.head + 2),
        Err(LogError::Gone { .. })
    ));
    assert_eq!(log.timestamp_at(1001), Some(1000));
    assert_eq!(log.timestamp_at(st.head), Some(1399));
    assert_eq!(log.timestamp_at(st.head + 1), None);
}

#[test]
fn chunk_timestamp_is_that_of_the_record_holding_the_first_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(cfg(dir.path())).expect("open");
    start(&log, A, 0);
    log.append(Bytes::from_static(b"hello"), 11)
        .expect("append");
    log.append(Bytes::from_static(b"world"), 22)
        .expect("append");
    let mut r = log.reader(3).expect("reader");
    let c = r.try_next(4).expect("read").expect("chunk");
    assert_eq!(
        (c.offset, c.timestamp_us, &c.data[..]),
        (3, 11, &b"llow"[..])
    );
    let c = r.try_next(100).expect("read").expect("chunk");
    assert_eq!(
        (c.offset, c.timestamp_us, &c.data[..]),
        (7, 22, &b"orld"[..])
    );
    assert!(r.try_next(100).expect("read").is_none());
}

#[tokio::test]
async fn pieces_are_the_records_own_buffers_with_their_timestamps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(cfg(dir.path())).expect("open");
    start(&log, A, 0);
    for (data, ts) in [(&b"hello"[..], 11), (b"world", 22), (b"!!", 33)] {
        log.append(Bytes::copy_from_slice(data), ts)
            .expect("append");
    }
    let mut r = log.reader(3).expect("reader");
    let pieces = r.next_pieces(7).await.expect("pieces");
    let got: Vec<(u64, u64, &[u8])> = pieces
        .iter()
        .map(|p| (p.offset, p.timestamp_us, &p.data[..]))
        .collect();
    assert_eq!(got, vec![(3, 11, &b"llo"[..]), (6, 22, &b"worl"[..])]);
    let joined = crate::log::join_pieces(pieces);
    assert_eq!(
        (joined.offset, joined.timestamp_us, &joined.data[..]),
        (3, 11, &b"lloworl"[..])
    );
    let rest = r.next_pieces(100).await.expect("rest");
    let got: Vec<(u64, u64, &[u8])> = rest
        .iter()
        .map(|p| (p.offset, p.timestamp_us, &p.data[..]))
        .collect();
    assert_eq!(got, vec![(10, 22, &b"d"[..]), (11, 33, &b"!!"[..])]);
}

#[test]
fn large_records_cross_writeback_windows_and_read_back() {
    // Records of 3 MiB: several 8 MiB writeback windows are started along the way.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = cfg(dir.path());
    c.segment_bytes = 64 << 20;
    let log = Log::open(c).expect("open");
    start(&log, A, 0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let all = fill(&log, &mut rng, 9, 3 << 20);
    assert_eq!(read_to_head(&log, 1, 1 << 20).expect("read"), all);
    drop(log);
    let log = Log::open(cfg(dir.path())).expect("reopen");
    assert_eq!(read_to_head(&log, 1, 1 << 20).expect("read"), all);
}

#[tokio::test]
async fn reader_waits_then_wakes_on_append() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(cfg(dir.path())).expect("open");
    start(&log, A, 0);
    let mut r = log.reader(1).expect("reader");
    assert!(r.try_next(10).expect("try").is_none());
    let task = tokio::spawn(async move { r.next(10).await });
    log.append(Bytes::from_static(b"abc"), 5).expect("append");
    let c = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("reader woke")
        .expect("join")
        .expect("chunk");
    assert_eq!((c.offset, &c.data[..]), (1, &b"abc"[..]));
}

#[test]
fn reopen_after_drop_keeps_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let (all, before) = {
        let log = Log::open(cfg(dir.path())).expect("open");
        start(&log, A, 500);
        let mut all = fill(&log, &mut rng, 50, 2000);
        log.switch_replid(B).expect("switch");
        all.extend(fill(&log, &mut rng, 50, 2000));
        log.close().expect("close");
        (all, log.status())
    };
    let log = Log::open(cfg(dir.path())).expect("reopen");
    let st = log.status();
    assert_eq!(
        (st.epoch, st.head, st.first_valid),
        (before.epoch, before.head, 501)
    );
    assert_eq!(st.history, before.history);
    assert_eq!(st.durable, st.head);
    assert_eq!(st.newest_snapshot.map(|s| s.offset), Some(500));
    assert_eq!(read_to_head(&log, 501, 4096).expect("read"), all);
    log.append(Bytes::from_static(b"more"), 9)
        .expect("append after reopen");
    assert_eq!(log.status().head, before.head + 4);
}

#[test]
fn torn_tail_is_truncated_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let head = {
        let log = Log::open(cfg(dir.path())).expect("open");
        start(&log, A, 0);
        log.append(Bytes::from(vec![1u8; 100]), 1).expect("append");
        log.append(Bytes::from(vec![2u8; 100]), 2).expect("append");
        log.status().head
    };
    assert_eq!(head, 200);
    let last = segment_files(dir.path()).pop().expect("a segment");
    let len = std::fs::metadata(&last).expect("stat").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .and_then(|f| f.set_len(len - 30))
        .expect("truncate");
    let log = Log::open(cfg(dir.path())).expect("reopen");
    assert_eq!(log.status().head, 100);
    assert_eq!(std::fs::metadata(&last).expect("stat").len(), 124);
    assert_eq!(read_to_head(&log, 1, 1000).expect("read"), vec![1u8; 100]);
    log.append(Bytes::from_static(b"z"), 3).expect("append");
    assert_eq!(read_to_head(&log, 101, 10).expect("read"), b"z");
}

#[test]
fn crc_flip_in_tail_record_is_truncated_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = Log::open(cfg(dir.path())).expect("open");
        start(&log, A, 0);
        log.append(Bytes::from(vec![1u8; 100]), 1).expect("append");
        log.append(Bytes::from(vec![2u8; 100]), 2).expect("append");
    }
    let last = segment_files(dir.path()).pop().expect("a segment");
    flip_byte(&last, 124 + 24 + 50);
    let log = Log::open(cfg(dir.path())).expect("reopen");
    let st = log.status();
    assert_eq!((st.head, st.corruptions_total), (100, 0));
    assert_eq!(read_to_head(&log, 1, 1000).expect("read"), vec![1u8; 100]);
}

#[test]
fn crc_flip_in_older_segment_sets_a_corruption_barrier() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(cfg(dir.path())).expect("open");
    start(&log, A, 0);
    // 1000-byte records, 16 KiB segments: record k covers [1000k+1, 1000k+1000].
    for i in 0..60u8 {
        log.append(Bytes::from(vec![i; 1000]), u64::from(i))
            .expect("append");
    }
    let head = log.status().head;
    let first = segment_files(dir.path())
        .into_iter()
        .next()
        .expect("segment");
    // Third record of the first segment: offsets 2001..=3000.
    flip_byte(&first, 2 * 1024 + 24 + 10);
    let mut r = log.reader(1).expect("reader");
    let mut n = 0;
    let err = loop {
        match r.try_next(700) {
            Ok(Some(c)) => n += c.data.len(),
            Ok(None) => panic!("read past corruption"),
            Err(e) => break e,
        }
    };
    assert_eq!(n, 2000, "bytes before the bad record are served");
    assert!(
        matches!(err, LogError::Corrupt { offset: 2001, ref path } if *path == first),
        "{err}"
    );
    let st = log.status();
    assert_eq!((st.first_valid, st.corruptions_total), (3001, 1));
    assert_eq!(
        log.decide(A, 1500),
        PsyncDecision::Full {
            reason: FullReason::Corruption
        }
    );
    assert_eq!(
        log.decide(A, 3001),
        PsyncDecision::Continue { replid: A.into() }
    );
    assert!(matches!(log.reader(2500), Err(LogError::Gone { .. })));
    assert!(
        log.snapshot_for_full_sync().is_none(),
        "snapshot at 0 needs offsets from 1"
    );
    assert!(log.needs_snapshot());
    let tail = read_to_head(&log, 3001, 4096).expect("read after barrier");
    assert_eq!(tail.len() as u64, head - 3000);
    assert!(tail[..1000].iter().all(|&b| b == 3));
    // A second reader does not count it again; the barrier survives a restart.
    assert!(matches!(r.try_next(10), Err(LogError::Gone { .. })));
    drop((r, log));
    let log = Log::open(cfg(dir.path())).expect("reopen");
    assert_eq!(log.status().first_valid, 3001);
    // A fresh snapshot after the barrier makes full syncs possible again.
    log.add_snapshot(snapshot(&log, A, 5000))
        .expect("add snapshot");
    assert_eq!(log.snapshot_for_full_sync().map(|s| s.offset), Some(5000));
}

#[test]
fn decide_rules_and_history_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = Log::open(cfg(dir.path())).expect("open");
        assert_eq!(
            log.decide(A, 1),
            PsyncDecision::Full {
                reason: FullReason::NoHistory
            }
        );
        start(&log, A, 100);
        log.append(Bytes::from(vec![0u8; 50]), 1).expect("append");
        log.switch_replid(B).expect("switch");
        log.append(Bytes::from(vec![0u8; 50]), 2).expect("append");
    }
    let log = Log::open(cfg(dir.path())).expect("reopen");
    let cont = PsyncDecision::Continue { replid: B.into() };
    let full = |reason| PsyncDecision::Full { reason };
    assert_eq!(log.current(), Some((B.into(), 200)));
    assert_eq!(log.decide(B, 101), cont);
    assert_eq!(log.decide(&B.to_uppercase(), 180), cont);
    assert_eq!(log.decide(A, 101), cont);
    assert_eq!(
        log.decide(A, 151),
        cont,
        "old id valid up to the switch point"
    );
    assert_eq!(log.decide(A, 152), full(FullReason::NoHistory));
    assert_eq!(log.decide(B, 201), cont, "head+1");
    assert_eq!(log.decide(B, 202), full(FullReason::OffsetOutOfRange));
    assert_eq!(log.decide(B, 100), full(FullReason::OffsetOutOfRange));
    assert_eq!(log.decide("?", -1i64 as u64), full(FullReason::FirstSync));
    assert_eq!(log.decide(C, 150), full(FullReason::NoHistory));
    start(&log, C, 1000);
    assert_eq!(log.decide(B, 1001), full(FullReason::NewEpoch));
    assert_eq!(FullReason::NewEpoch.as_str(), "new_epoch");
}

#[test]
fn add_snapshot_checks_replid_against_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(cfg(dir.path())).expect("open");
    start(&log, A, 0);
    log.append(Bytes::from(vec![0u8; 100]), 1).expect("append");
    log.switch_replid(B).expect("switch");
    log.append(Bytes::from(vec![0u8; 100]), 1).expect("append");
    assert!(matches!(
        log.add_snapshot(snapshot(&log, A, 150)),
        Err(LogError::ReplidInvalid)
    ));
    assert!(matches!(
        log.add_snapshot(snapshot(&log, C, 50)),
        Err(LogError::ReplidInvalid)
    ));
    log.add_snapshot(snapshot(&log, A, 100))
        .expect("A at 100 (next byte 101 is the switch)");
    log.add_snapshot(snapshot(&log, B, 180)).expect("B at 180");
    let st = log.status();
    assert_eq!(
        st.newest_snapshot.map(|s| (s.replid, s.offset)),
        Some((B.into(), 180))
    );
    let snaps = std::fs::read_dir(dir.path().join("snapshots"))
        .expect("ls")
        .count();
    assert_eq!(snaps, 2, "only the newest snapshot (rdb + json) is kept");
}
