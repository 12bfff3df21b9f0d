//! Unit tests of the downstream link state machine: resume offsets, replid switches at exact
//! offsets, snapshot transfers and their resumption, refusals — no sockets, no files.

use super::*;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn feed(d: &mut Down, f: Frame) -> Result<Vec<DownAction>, DownError> {
    let mut out = Vec::new();
    d.on_frame(f, 1_000, 7, &mut out).map(|()| out)
}

fn full(offset: u64, size: u64, reason: &str) -> Frame {
    Frame::Full {
        replid: A.into(),
        offset,
        rdb_version: 11,
        size,
        reason: reason.into(),
    }
}

fn chunk(n: usize) -> Frame {
    Frame::SnapshotChunk {
        data: Bytes::from(vec![b'r'; n]),
    }
}

#[test]
fn hello_asks_for_head_plus_one_and_offers_the_partial_transfer() {
    let d = Down::new(Mode::Stream, Some((A.into(), 99)), None);
    let Frame::Hello {
        replid,
        next_offset,
        partial,
        lane,
        ..
    } = d.hello("b", Some("s1"))
    else {
        panic!("not a Hello");
    };
    assert_eq!(
        (replid.as_deref(), next_offset, partial, lane.as_deref()),
        (Some(A), 100, None, Some("s1"))
    );
    let t = Transfer {
        replid: A.into(),
        offset: 50,
        size: 10,
        have: 4,
        reason: "first_sync".into(),
    };
    let d = Down::new(Mode::Stream, None, Some(t));
    let Frame::Hello {
        replid,
        next_offset,
        partial: Some(p),
        ..
    } = d.hello("b", None)
    else {
        panic!("no partial offered");
    };
    assert_eq!((replid, next_offset, p.have, p.size), (None, 0, 4, 10));
    let r = Down::new(Mode::SnapshotOnly { ours: None }, None, None);
    assert!(matches!(r.hello("b", None), Frame::Hello { name, .. } if name == "b/snapshot"));
}

#[test]
fn continue_must_resume_exactly_at_head_plus_one() {
    let mut d = Down::new(Mode::Stream, Some((A.into(), 99)), None);
    let err = feed(
        &mut d,
        Frame::Continue {
            replid: A.into(),
            offset: 99,
        },
    )
    .unwrap_err();
    assert_eq!(
        err,
        DownError::Protocol("Continue at 99, but this log needs 100".into())
    );
    let mut d = Down::new(Mode::Stream, Some((A.into(), 99)), None);
    let out = feed(
        &mut d,
        Frame::Continue {
            replid: B.into(),
            offset: 100,
        },
    )
    .unwrap();
    assert_eq!(
        out,
        vec![
            DownAction::Online { full: false },
            DownAction::Send(Frame::ack(7))
        ]
    );
}

#[test]
fn acks_carry_received_only_under_protocol_2_and_repeat_nothing() {
    let ack2 = |durable, received| {
        Some(DownAction::Send(Frame::Ack {
            durable,
            received: Some(received),
        }))
    };
    let mut d = Down::new(Mode::Stream, Some((A.into(), 99)), None).with_received_acks(true);
    let out = feed(
        &mut d,
        Frame::Continue {
            replid: A.into(),
            offset: 100,
        },
    )
    .unwrap();
    assert_eq!(out[1], ack2(7, 99).unwrap(), "where this log stands");
    assert_eq!(d.ack(120, 7), ack2(7, 120), "received moved");
    assert_eq!(d.ack(120, 7), None, "nothing new");
    assert_eq!(d.ack(120, 100), ack2(100, 120), "durable moved");
    assert_eq!(d.ack(90, 100), None, "received never moves back");
    assert_eq!(d.ack(90, 130), ack2(130, 130), "nor below durable");
    // A new epoch: nothing until the snapshot is whole (old offsets mean nothing upstream).
    feed(&mut d, Frame::NewEpoch { reason: "r".into() }).unwrap();
    assert_eq!(d.ack(200, 150), None);
    feed(&mut d, full(500, 3, "new_epoch")).unwrap();
    feed(&mut d, chunk(3)).unwrap();
    assert_eq!(d.ack(200, 150), None, "mid-snapshot");
    feed(&mut d, Frame::SnapshotEnd).unwrap();
    assert_eq!(d.ack(500, 500), ack2(500, 500));
    // Protocol 1: nothing before Continue, then only the durable offset counts.
    let mut d = Down::new(Mode::Stream, Some((A.into(), 99)), None);
    assert_eq!(d.ack(120, 7), None, "not in sync yet");
    let cont = Frame::Continue {
        replid: A.into(),
        offset: 100,
    };
    assert_eq!(
        feed(&mut d, cont).unwrap()[1],
        DownAction::Send(Frame::ack(7))
    );
    assert_eq!(d.ack(130, 7), None, "a received move is not news to it");
    assert_eq!(d.ack(130, 110), Some(DownAction::Send(Frame::ack(110))));
}

#[test]
fn log_frames_are_trimmed_to_the_head_and_gaps_refused() {
    let mut d = Down::new(Mode::Stream, Some((A.into(), 99)), None);
    // Bytes 95..=104: the first five are held already.
    let out = feed(&mut d, Frame::log(95, 3, Bytes::from_static(b"0123456789"))).unwrap();
    assert_eq!(
        out[0],
        DownAction::Append {
            data: Bytes::from_static(b"56789"),
            timestamp_us: 3
        }
    );
    assert_eq!(d.next_offset(), Some(105));
    // Entirely old: nothing to do.
    assert!(feed(&mut d, Frame::log(100, 3, Bytes::from_static(b"abc")))
        .unwrap()
        .is_empty());
    let err = feed(&mut d, Frame::log(106, 3, Bytes::from_static(b"x"))).unwrap_err();
    assert_eq!(
        err,
        DownError::Protocol("log frame at 106 leaves a gap after 105".into())
    );
}

#[test]
fn a_log_frame_before_any_snapshot_is_refused() {
    let mut d = Down::new(Mode::Stream, None, None);
    let err = feed(&mut d, Frame::log(1, 1, Bytes::from_static(b"x"))).unwrap_err();
    assert!(matches!(err, DownError::Protocol(m) if m.contains("before any snapshot")));
}

#[test]
fn replid_switch_only_at_the_exact_next_offset() {
    let mut d = Down::new(Mode::Stream, Some((A.into(), 99)), None);
    for start in [99, 101] {
        let err = feed(
            &mut d,
            Frame::ReplidSwitch {
                replid: B.into(),
                start,
            },
        )
        .unwrap_err();
        assert_eq!(
            err,
            DownError::Protocol(format!("replid switch at {start}, but this log is at 100"))
        );
    }
    let out = feed(
        &mut d,
        Frame::ReplidSwitch {
            replid: B.into(),
            start: 100,
        },
    )
    .unwrap();
    assert_eq!(
        out,
        vec![DownAction::SwitchReplid {
            replid: B.into(),
            start: 100
        }]
    );
    // The next Hello names the new replid.
    assert!(matches!(d.hello("b", None), Frame::Hello { replid: Some(r), .. } if r == B));
}

#[test]
fn full_sync_writes_chunks_then_starts_the_epoch_at_the_snapshot_offset() {
    let mut d = Down::new(Mode::Stream, None, None);
    let out = feed(&mut d, full(500, 6, "first_sync")).unwrap();
    assert!(matches!(&out[..], [DownAction::BeginSnapshot(t)] if t.offset == 500));
    // Log frames are out of place while the snapshot arrives.
    assert!(feed(&mut d.clone(), Frame::log(501, 1, Bytes::from_static(b"x"))).is_err());
    feed(&mut d, chunk(4)).unwrap();
    feed(&mut d, chunk(2)).unwrap();
    let out = feed(&mut d, Frame::SnapshotEnd).unwrap();
    assert!(matches!(
        &out[..],
        [
            DownAction::FinishSnapshot { refresh: false, first_sync: true, transfer },
            DownAction::Online { full: true }
        ] if transfer.have == 6
    ));
    assert_eq!(d.next_offset(), Some(501));
    let out = feed(&mut d, Frame::log(501, 9, Bytes::from_static(b"ab"))).unwrap();
    assert!(matches!(&out[0], DownAction::Append { data, .. } if &data[..] == b"ab"));
}

#[test]
fn snapshot_size_is_enforced_both_ways() {
    let mut d = Down::new(Mode::Stream, None, None);
    feed(&mut d, full(500, 6, "first_sync")).unwrap();
    let err = feed(&mut d, chunk(7)).unwrap_err();
    assert_eq!(
        err,
        DownError::Protocol("snapshot larger than announced".into())
    );
    assert!(d.into_transfer().is_none(), "a broken transfer is not kept");
    let mut d = Down::new(Mode::Stream, None, None);
    feed(&mut d, full(500, 6, "first_sync")).unwrap();
    feed(&mut d, chunk(5)).unwrap();
    let err = feed(&mut d, Frame::SnapshotEnd).unwrap_err();
    assert_eq!(
        err,
        DownError::Protocol("snapshot ended at 5 of 6 bytes".into())
    );
    let mut d = Down::new(Mode::Stream, None, None);
    assert!(feed(&mut d, chunk(1)).is_err(), "a chunk without Full");
}

#[test]
fn a_cut_transfer_resumes_at_the_byte_held() {
    let mut d = Down::new(Mode::Stream, None, None);
    feed(&mut d, full(500, 10, "first_sync")).unwrap();
    feed(&mut d, chunk(4)).unwrap();
    let held = d.into_transfer();
    assert_eq!(held.as_ref().map(|t| t.have), Some(4));
    // The next link: the upstream resumes at byte 4.
    let mut d = Down::new(Mode::Stream, None, held.clone());
    assert!(feed(&mut d, full(500, 10, "first_sync"))
        .unwrap()
        .is_empty());
    let out = feed(&mut d, Frame::SnapshotFrom { from: 4 }).unwrap();
    assert_eq!(out, vec![DownAction::ResumeSnapshot { from: 4 }]);
    feed(&mut d, chunk(6)).unwrap();
    assert!(feed(&mut d, Frame::SnapshotEnd).is_ok());
    // A resume at the wrong byte is refused and the held transfer dropped.
    let mut d = Down::new(Mode::Stream, None, held.clone());
    feed(&mut d, full(500, 10, "first_sync")).unwrap();
    let mut out = Vec::new();
    let err = d.on_frame(Frame::SnapshotFrom { from: 3 }, 1, 0, &mut out);
    assert!(err.is_err());
    assert_eq!(out, vec![DownAction::DropSnapshot]);
    // The upstream may also start over: the held file is begun again.
    let mut d = Down::new(Mode::Stream, None, held.clone());
    feed(&mut d, full(500, 10, "first_sync")).unwrap();
    let out = feed(&mut d, chunk(10)).unwrap();
    assert!(matches!(&out[0], DownAction::BeginSnapshot(t) if t.have == 0));
    assert!(feed(&mut d, Frame::SnapshotEnd).is_ok());
    // A different snapshot replaces the held transfer.
    let mut d = Down::new(Mode::Stream, None, held);
    let out = feed(&mut d, full(900, 10, "first_sync")).unwrap();
    assert!(matches!(&out[0], DownAction::BeginSnapshot(t) if t.offset == 900));
}

#[test]
fn continue_drops_a_held_transfer() {
    let t = Transfer {
        replid: A.into(),
        offset: 50,
        size: 10,
        have: 4,
        reason: "first_sync".into(),
    };
    let mut d = Down::new(Mode::Stream, Some((A.into(), 99)), Some(t));
    let out = feed(
        &mut d,
        Frame::Continue {
            replid: A.into(),
            offset: 100,
        },
    )
    .unwrap();
    assert_eq!(out[0], DownAction::DropSnapshot);
    assert!(d.into_transfer().is_none());
}

#[test]
fn error_frames_and_strays_end_the_link() {
    let mut d = Down::new(Mode::Stream, Some((A.into(), 1)), None);
    let err = feed(
        &mut d,
        Frame::Error {
            code: 4,
            message: "no lane".into(),
        },
    )
    .unwrap_err();
    assert_eq!(
        err,
        DownError::Refused("upstream agent error 4: no lane".into())
    );
    let err = feed(&mut d, Frame::ack(1)).unwrap_err();
    assert!(matches!(err, DownError::Protocol(m) if m.contains("unexpected Ack")));
    // A compressed payload that does not inflate is a protocol error, not a panic.
    let bad = Frame::Log {
        offset: 2,
        timestamp_us: 1,
        compressed: true,
        raw_len: 5,
        data: Bytes::from_static(b"not zstd"),
    };
    assert!(
        matches!(feed(&mut d, bad), Err(DownError::Protocol(m)) if m.contains("log frame at 2"))
    );
}

#[test]
fn snapshot_refresh_wants_only_a_newer_snapshot() {
    let mut d = Down::new(Mode::SnapshotOnly { ours: Some(500) }, None, None);
    assert!(feed(
        &mut d,
        Frame::Heartbeat {
            head: 1,
            head_timestamp_us: 1,
            now_us: 1
        }
    )
    .unwrap()
    .is_empty());
    assert!(matches!(
        feed(&mut d, full(500, 3, "snapshot_refresh")),
        Err(DownError::Refused(_))
    ));
    let mut d = Down::new(Mode::SnapshotOnly { ours: Some(500) }, None, None);
    feed(&mut d, full(600, 3, "snapshot_refresh")).unwrap();
    feed(&mut d, chunk(3)).unwrap();
    let out = feed(&mut d, Frame::SnapshotEnd).unwrap();
    assert!(matches!(
        &out[..],
        [DownAction::FinishSnapshot { refresh: true, .. }]
    ));
    let mut d = Down::new(Mode::SnapshotOnly { ours: None }, None, None);
    assert!(feed(&mut d, Frame::log(1, 1, Bytes::from_static(b"x"))).is_err());
}

#[test]
fn commit_asks_for_an_fsync_only_when_in_sync_and_not_yet_durable() {
    let mut d = Down::new(Mode::Stream, Some((A.into(), 99)), None).with_received_acks(true);
    let commit = |upto| Frame::Commit { upto };
    // Not in sync yet: this log's offsets mean nothing upstream.
    assert_eq!(feed(&mut d, commit(50)).unwrap(), vec![]);
    feed(
        &mut d,
        Frame::Continue {
            replid: A.into(),
            offset: 100,
        },
    )
    .unwrap();
    let mut out = Vec::new();
    d.on_frame(
        Frame::log(100, 5, Bytes::from_static(b"abcd")),
        1,
        99,
        &mut out,
    )
    .unwrap();
    out.clear();
    // 103 is written, 99 durable: fsync now.
    d.on_frame(commit(103), 2, 99, &mut out).unwrap();
    assert_eq!(out, vec![DownAction::Commit { upto: 103 }]);
    // Once the fsync lands the Ack says so at once.
    assert_eq!(
        d.ack(103, 103),
        Some(DownAction::Send(Frame::Ack {
            durable: 103,
            received: Some(103)
        }))
    );
    // Already durable: nothing to do.
    out.clear();
    d.on_frame(commit(103), 3, 103, &mut out).unwrap();
    assert_eq!(out, vec![]);
    // A snapshot refresh link does not expect one.
    let mut r = Down::new(Mode::SnapshotOnly { ours: None }, None, None);
    assert!(matches!(
        feed(&mut r, commit(1)),
        Err(DownError::Protocol(m)) if m.contains("unexpected Commit")
    ));
}
