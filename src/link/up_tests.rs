//! Unit tests of the serving link state machine: Hello checks, resume offsets, snapshot
//! resumption, replid switches cut at their exact offsets, a stale epoch, acks, heartbeat
//! timing — no sockets, no files, no clock.

use bytes::Bytes;

use super::*;
use crate::log::FullReason;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccccccccccccccccccccccccccc";

fn up(compression: Compression) -> Up {
    Up::new(UpOptions {
        heartbeat: Duration::from_millis(500),
        compression,
        zstd_level: 1,
    })
}

fn hello(replid: Option<&str>, next: u64, partial: Option<PartialSnapshot>) -> Frame {
    Frame::Hello {
        version: PROTOCOL_VERSION,
        name: "b".into(),
        replid: replid.map(str::to_string),
        next_offset: next,
        partial,
        lane: None,
    }
}

fn h(replid: &str, start: u64) -> HistoryEntry {
    HistoryEntry {
        replid: replid.into(),
        start,
    }
}

fn piece(offset: u64, data: &'static [u8], ts: u64) -> Chunk {
    Chunk {
        offset,
        timestamp_us: ts,
        data: Bytes::from_static(data),
    }
}

/// (offset, bytes) of every Log frame and (replid, start) of every switch, in order.
fn shape(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| match f {
            Frame::Log { offset, data, .. } => {
                format!("log {offset} {}", String::from_utf8_lossy(data))
            }
            Frame::ReplidSwitch { replid, start } => format!("switch {} {start}", &replid[..1]),
            other => other.name().to_string(),
        })
        .collect()
}

#[test]
fn hello_is_checked() {
    let mut u = up(Compression::None);
    assert_eq!(u.on_hello(None), Ok(Opening::Closed));
    let bad = Frame::Hello {
        version: 9,
        name: "b".into(),
        replid: None,
        next_offset: 0,
        partial: None,
        lane: None,
    };
    let Err(UpError::Close { code, message }) = u.on_hello(Some(bad)) else {
        panic!("version 9 accepted");
    };
    assert_eq!(code, CloseCode::Protocol);
    assert!(
        message.contains("protocol version 9 is not supported"),
        "{message}"
    );
    assert!(u.on_hello(Some(Frame::ack(1))).is_err());
    let refresh = Frame::Hello {
        version: PROTOCOL_VERSION,
        name: "b/snapshot".into(),
        replid: None,
        next_offset: 0,
        partial: None,
        lane: None,
    };
    assert_eq!(u.on_hello(Some(refresh)), Ok(Opening::SnapshotOnly));
    let mut u = up(Compression::None);
    assert_eq!(u.on_hello(Some(hello(None, 0, None))), Ok(Opening::Sync));
    assert_eq!(
        u.psync_args(),
        None,
        "an empty downstream gets a first sync"
    );
}

#[test]
fn continue_resumes_at_the_offset_asked_and_names_the_current_replid() {
    let mut u = up(Compression::None);
    u.on_hello(Some(hello(Some(A), 1995, None))).unwrap();
    assert_eq!(u.psync_args(), Some((A, 1995)));
    let history = [h(A, 1), h(B, 2000)];
    let f = u.on_decision(&PsyncDecision::Continue { replid: B.into() }, 3, &history);
    assert_eq!(
        f,
        Some(Frame::Continue {
            replid: B.into(),
            offset: 1995
        })
    );
    // The downstream still holds A: the switch to B goes out exactly at 2000.
    let frames = u
        .log_frames(
            // Two consecutive small pieces are joined, then cut at the switch.
            vec![piece(1995, b"01234", 1), piece(2000, b"56789", 2)],
            &history,
        )
        .unwrap();
    assert_eq!(
        shape(&frames),
        ["log 1995 01234", "switch b 2000", "log 2000 56789"]
    );
    assert_eq!(u.position(), 2005);
    let full = u.on_decision(
        &PsyncDecision::Full {
            reason: FullReason::OffsetOutOfRange,
        },
        3,
        &history,
    );
    assert_eq!(full, None);
}

#[test]
fn switches_at_a_piece_boundary_and_back_to_back() {
    let mut u = up(Compression::None);
    u.on_hello(Some(hello(Some(A), 10, None))).unwrap();
    let history = [h(A, 1), h(B, 12), h(C, 12), h(A, 14)];
    u.on_decision(&PsyncDecision::Continue { replid: A.into() }, 1, &history);
    let frames = u
        .log_frames(vec![piece(10, b"ab", 1), piece(12, b"cdef", 2)], &history)
        .unwrap();
    // The switches at 12 start exactly at the piece boundary, before the second piece.
    assert_eq!(
        shape(&frames),
        [
            "log 10 ab",
            "switch b 12",
            "switch c 12",
            "log 12 cd",
            "switch a 14",
            "log 14 ef"
        ]
    );
}

#[test]
fn switches_split_joined_runs_exactly() {
    let mut u = up(Compression::None);
    u.on_hello(Some(hello(Some(A), 10, None))).unwrap();
    let history = [h(A, 1), h(B, 12), h(C, 12), h(A, 14)];
    u.on_decision(&PsyncDecision::Continue { replid: A.into() }, 1, &history);
    let frames = u
        .log_frames(vec![piece(10, b"abcdef", 1)], &history)
        .unwrap();
    assert_eq!(
        shape(&frames),
        [
            "log 10 ab",
            "switch b 12",
            "switch c 12",
            "log 12 cd",
            "switch a 14",
            "log 14 ef"
        ]
    );
    // Nothing is announced twice.
    let more = u.log_frames(vec![piece(16, b"g", 3)], &history).unwrap();
    assert_eq!(shape(&more), ["log 16 g"]);
}

#[test]
fn compressed_frames_inflate_to_the_same_bytes() {
    let mut u = up(Compression::Zstd);
    u.on_hello(Some(hello(Some(A), 10, None))).unwrap();
    let history = [h(A, 1)];
    u.on_decision(&PsyncDecision::Continue { replid: A.into() }, 1, &history);
    let frames = u
        .log_frames(vec![piece(10, b"abc", 1), piece(13, b"def", 2)], &history)
        .unwrap();
    let [Frame::Log {
        offset: 10,
        compressed,
        raw_len: 6,
        data,
        ..
    }] = &frames[..]
    else {
        panic!("one joined frame expected: {frames:?}");
    };
    let raw = crate::link::log_payload(*compressed, 6, data, 100).unwrap();
    assert_eq!(&raw[..], b"abcdef");
}

#[test]
fn a_full_sync_resumes_only_the_very_same_transfer() {
    let snap = SnapshotOffer {
        replid: A.into(),
        offset: 500,
        size: 100,
        rdb_version: 11,
    };
    let held = |replid: &str, size: u64| PartialSnapshot {
        replid: replid.into(),
        offset: 500,
        size,
        have: 40,
    };
    let mut u = up(Compression::None);
    u.on_hello(Some(hello(None, 0, Some(held(&A.to_uppercase(), 100)))))
        .unwrap();
    let (frames, from) = u.full_frames(&snap, "first_sync");
    assert_eq!(from, 40);
    assert_eq!(frames.get(1), Some(&Frame::SnapshotFrom { from: 40 }));
    // Another size (so another RDB): start from byte 0, no SnapshotFrom.
    let mut u = up(Compression::None);
    u.on_hello(Some(hello(None, 0, Some(held(A, 99))))).unwrap();
    let (frames, from) = u.full_frames(&snap, "first_sync");
    assert_eq!((frames.len(), from), (1, 0));
    // After the snapshot, the stream starts right after its offset.
    u.snapshot_sent(&snap, 2, &[h(B, 1), h(A, 400)]);
    assert_eq!(u.position(), 501);
    let frames = u.log_frames(vec![piece(501, b"x", 1)], &[h(B, 1), h(A, 400)]);
    assert_eq!(shape(&frames.unwrap()), ["log 501 x"]);
}

#[test]
fn a_stale_epoch_announces_new_epoch_and_retention_does_not() {
    let mut u = up(Compression::None);
    u.on_hello(Some(hello(Some(A), 10, None))).unwrap();
    let history = [h(A, 1), h(B, 50)];
    u.on_decision(&PsyncDecision::Continue { replid: A.into() }, 4, &history);
    // Retention removed the offset: same epoch, re-decide with the replid last announced.
    assert_eq!(u.on_gone(4, &history, &history), None);
    assert_eq!(u.psync_args(), Some((A, 10)));
    // The epoch changed under the link: NewEpoch, then a decision that will be Full.
    let f = u.on_gone(5, &[h(C, 900)], &history);
    assert!(matches!(f, Some(Frame::NewEpoch { .. })));
    assert_eq!(
        u.psync_args(),
        Some((A, 10)),
        "the old replid, which the new epoch does not know"
    );
}

#[test]
fn acks_only_move_forward_and_other_frames_close_the_link() {
    let mut u = up(Compression::None);
    let acked = |received, durable| Ok(Acked { received, durable });
    // A first-version agent: received is its durable offset.
    assert_eq!(u.on_frame(Frame::ack(10)), acked(10, 10));
    assert_eq!(u.on_frame(Frame::ack(7)), acked(10, 10));
    // Protocol 2: received runs ahead of durable; neither moves back.
    let ack2 = |durable, received| Frame::Ack {
        durable,
        received: Some(received),
    };
    assert_eq!(u.on_frame(ack2(12, 50)), acked(50, 12));
    assert_eq!(u.on_frame(ack2(11, 40)), acked(50, 12));
    assert_eq!(u.on_frame(ack2(60, 60)), acked(60, 60));
    assert_eq!(u.on_frame(Frame::ack(55)), acked(60, 60));
    let Err(UpError::Close { code, message }) = u.on_frame(Frame::SnapshotEnd) else {
        panic!("a stray frame accepted");
    };
    assert_eq!(code, CloseCode::Protocol);
    assert_eq!(
        message,
        "unexpected SnapshotEnd frame from a downstream agent"
    );
}

#[test]
fn heartbeats_come_at_once_then_every_interval() {
    let mut u = up(Compression::None);
    let t0 = 1_000_000;
    let beat = u.poll_heartbeat(t0, 77, 66);
    assert_eq!(
        beat,
        Some(Frame::Heartbeat {
            head: 77,
            head_timestamp_us: 66,
            now_us: t0
        })
    );
    assert_eq!(u.next_heartbeat_us(), t0 + 500_000);
    assert_eq!(u.poll_heartbeat(t0 + 499_999, 77, 66), None);
    assert!(u.poll_heartbeat(t0 + 500_000, 78, 67).is_some());
    // A late poll schedules from when it ran, so beats never bunch up.
    assert!(u.poll_heartbeat(t0 + 2_000_000, 78, 67).is_some());
    assert_eq!(u.next_heartbeat_us(), t0 + 2_500_000);
    assert_eq!(u.poll_heartbeat(t0 + 2_100_000, 78, 67), None);
}

#[test]
fn small_runs_are_joined_and_large_pieces_kept() {
    let big = SMALL_PIECE;
    let p = |offset: u64, len: usize, ts: u64| Chunk {
        offset,
        timestamp_us: ts,
        data: Bytes::from(vec![offset as u8; len]),
    };
    let pieces = vec![
        p(0, 10, 1),
        p(10, 20, 2),
        p(30, big, 3),
        p(30 + big as u64, 5, 4),
    ];
    let out = coalesce_small(pieces);
    let shape: Vec<(u64, u64, usize)> = out
        .iter()
        .map(|c| (c.offset, c.timestamp_us, c.data.len()))
        .collect();
    assert_eq!(
        shape,
        vec![(0, 1, 30), (30, 3, big), (30 + big as u64, 4, 5)]
    );
    assert_eq!(&out[0].data[..10], &[0u8; 10]);
    assert_eq!(&out[0].data[10..], &[10u8; 20]);
}

#[test]
fn a_commit_goes_out_once_the_bytes_it_covers_are_sent() {
    let history = [h(A, 1)];
    let mut u = up(Compression::None).with_commits(true);
    u.on_hello(Some(hello(Some(A), 100, None))).unwrap();
    u.on_decision(&PsyncDecision::Continue { replid: A.into() }, 1, &history);
    // The GETACK's last byte is 104; only 100..=102 are sent so far.
    u.want_commit(104);
    u.log_frames(vec![piece(100, b"abc", 1)], &history).unwrap();
    assert_eq!(u.poll_commit(), None, "104 is not sent yet");
    u.log_frames(vec![piece(103, b"de", 2)], &history).unwrap();
    assert_eq!(u.poll_commit(), Some(Frame::Commit { upto: 104 }));
    assert_eq!(u.poll_commit(), None, "one Commit per request");
    // Asked again for an offset the downstream already made durable: nothing to send.
    u.on_frame(Frame::ack(104)).unwrap();
    u.want_commit(104);
    assert_eq!(u.poll_commit(), None);
    // Two requests before the bytes go out: one Commit, for the later offset.
    u.want_commit(106);
    u.want_commit(105);
    u.log_frames(vec![piece(105, b"fg", 3)], &history).unwrap();
    assert_eq!(u.poll_commit(), Some(Frame::Commit { upto: 106 }));
    // An ack that arrives first makes the pending Commit moot.
    u.want_commit(107);
    u.on_frame(Frame::ack(107)).unwrap();
    u.log_frames(vec![piece(107, b"h", 4)], &history).unwrap();
    assert_eq!(u.poll_commit(), None);
}

#[test]
fn no_commit_on_a_link_below_protocol_3_or_across_a_full_sync() {
    let history = [h(A, 1)];
    let mut old = up(Compression::None);
    old.on_hello(Some(hello(Some(A), 100, None))).unwrap();
    old.on_decision(&PsyncDecision::Continue { replid: A.into() }, 1, &history);
    old.want_commit(100);
    old.log_frames(vec![piece(100, b"abc", 1)], &history)
        .unwrap();
    assert_eq!(
        old.poll_commit(),
        None,
        "a georelay/2 peer never sees Commit"
    );

    let mut u = up(Compression::None).with_commits(true);
    u.on_hello(Some(hello(None, 0, None))).unwrap();
    u.want_commit(500);
    let snap = SnapshotOffer {
        replid: A.into(),
        offset: 1000,
        size: 10,
        rdb_version: 11,
    };
    u.full_frames(&snap, "first_sync");
    u.snapshot_sent(&snap, 2, &history);
    assert_eq!(u.position(), 1001);
    assert_eq!(u.poll_commit(), None, "the old epoch's request is dropped");
}
