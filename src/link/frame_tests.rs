//! Unit tests of the frame codec: round trips, truncation, malformed bodies, random input.

use super::*;
use crate::link::FrameError;
use rand::{Rng, RngCore, SeedableRng};

const RID: &str = "0123456789abcdef0123456789abcdef01234567";

fn every_variant() -> Vec<Frame> {
    vec![
        Frame::Hello {
            version: PROTOCOL_VERSION,
            name: "edge-1 ✓".into(),
            replid: Some(RID.into()),
            next_offset: 1 << 40,
            partial: None,
            lane: None,
        },
        Frame::Hello {
            version: 7,
            name: String::new(),
            replid: None,
            next_offset: 0,
            partial: Some(PartialSnapshot {
                replid: RID.into(),
                offset: 99,
                size: 1 << 30,
                have: 12345,
            }),
            lane: Some("shard-0".into()),
        },
        Frame::Hello {
            version: PROTOCOL_VERSION,
            name: "b".into(),
            replid: None,
            next_offset: 0,
            partial: None,
            lane: Some("0123456789abcdef0123456789abcdef01234567".into()),
        },
        Frame::SnapshotFrom { from: 12345 },
        Frame::Continue {
            replid: RID.into(),
            offset: 12345,
        },
        Frame::Full {
            replid: RID.to_uppercase(),
            offset: u64::MAX,
            rdb_version: 11,
            size: 114 << 20,
            reason: "replid unknown".into(),
        },
        Frame::SnapshotChunk {
            data: Bytes::from_static(b"REDIS0011\xfa"),
        },
        Frame::SnapshotChunk { data: Bytes::new() },
        Frame::SnapshotEnd,
        Frame::log(
            1001,
            1_700_000_000_000_000,
            Bytes::from_static(b"*1\r\n$4\r\nPING\r\n"),
        ),
        Frame::Log {
            offset: 1,
            timestamp_us: 2,
            compressed: true,
            raw_len: 1 << 20,
            data: Bytes::from_static(b"\x28\xb5\x2f\xfd"),
        },
        Frame::Heartbeat {
            head: 99,
            head_timestamp_us: 98,
            now_us: 97,
        },
        Frame::ack(42),
        Frame::Ack {
            durable: 42,
            received: Some(4096),
        },
        Frame::ReplidSwitch {
            replid: RID.into(),
            start: 500,
        },
        Frame::NewEpoch {
            reason: "upstream full resync".into(),
        },
        Frame::Error {
            code: 3,
            message: "protocol version 9 not supported".into(),
        },
        Frame::Commit { upto: 1234 },
    ]
}

fn encoded(f: &Frame) -> BytesMut {
    let mut b = BytesMut::new();
    encode(f, &mut b);
    b
}

#[test]
fn round_trip_every_variant_one_by_one_and_concatenated() {
    let mut all = BytesMut::new();
    for f in every_variant() {
        let mut b = encoded(&f);
        all.extend_from_slice(&b);
        assert_eq!(decode(&mut b, MAX_FRAME).unwrap(), Some(f.clone()));
        assert!(b.is_empty(), "{} left bytes", f.name());
    }
    for f in every_variant() {
        assert_eq!(decode(&mut all, MAX_FRAME).unwrap(), Some(f));
    }
    assert_eq!(decode(&mut all, MAX_FRAME).unwrap(), None);
}

#[test]
fn encode_head_plus_payload_equals_encode() {
    for f in every_variant() {
        let mut head = BytesMut::new();
        let payload = encode_head(&f, &mut head);
        if let Some(p) = payload {
            head.extend_from_slice(&p);
        }
        assert_eq!(head, encoded(&f), "{}", f.name());
    }
}

#[test]
fn every_truncation_point_is_incomplete_and_consumes_nothing() {
    for f in every_variant() {
        let full = encoded(&f);
        for cut in 0..full.len() {
            let mut b = BytesMut::from(&full[..cut]);
            assert_eq!(
                decode(&mut b, MAX_FRAME).unwrap(),
                None,
                "{} cut {cut}",
                f.name()
            );
            assert_eq!(b.len(), cut);
        }
    }
}

#[test]
fn oversize_length_rejected_from_header_alone() {
    let mut b = BytesMut::from(&(MAX_FRAME as u32 + 1).to_le_bytes()[..]);
    let err = decode(&mut b, MAX_FRAME).unwrap_err();
    assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("exceeds"));
    let mut b = encoded(&Frame::ack(1));
    assert!(matches!(
        decode(&mut b, 8),
        Err(FrameError::TooLarge { len: 9, max: 8 })
    ));
}

fn body(bytes: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    b.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    b.extend_from_slice(bytes);
    b
}

fn with_str(mut v: Vec<u8>, s: &[u8]) -> Vec<u8> {
    v.extend_from_slice(&(s.len() as u32).to_le_bytes());
    v.extend_from_slice(s);
    v
}

#[test]
fn malformed_bodies_are_typed_errors() {
    let err = |bytes: &[u8]| decode(&mut body(bytes), MAX_FRAME).unwrap_err();
    assert!(matches!(err(&[]), FrameError::Truncated { .. }));
    assert!(matches!(err(&[0]), FrameError::UnknownType(0)));
    assert!(matches!(err(&[200]), FrameError::UnknownType(200)));
    assert!(matches!(
        err(&[T_ACK, 1, 2, 3]),
        FrameError::Truncated {
            field: "Ack.durable",
            ..
        }
    ));
    assert!(matches!(
        err(&[T_COMMIT, 1, 2]),
        FrameError::Truncated {
            field: "Commit.upto",
            ..
        }
    ));
    assert!(matches!(
        err(&[T_COMMIT, 1, 0, 0, 0, 0, 0, 0, 0, 9]),
        FrameError::TrailingBytes {
            frame: "Commit",
            extra: 1
        }
    ));
    assert!(matches!(
        err(&[T_SNAPSHOT_END, 0]),
        FrameError::TrailingBytes {
            frame: "SnapshotEnd",
            extra: 1
        }
    ));
    // Replid: wrong length, non-hex, bad UTF-8.
    let short = with_str(vec![T_CONTINUE], b"abc");
    assert!(matches!(err(&short), FrameError::BadReplid { .. }));
    let nonhex = with_str(vec![T_CONTINUE], &[b'g'; 40]);
    let e = err(&nonhex);
    assert!(e.to_string().contains("40 hex"), "{e}");
    let utf8 = with_str(vec![T_NEW_EPOCH], &[0xff, 0xfe]);
    assert!(matches!(
        err(&utf8),
        FrameError::BadUtf8 {
            field: "NewEpoch.reason"
        }
    ));
    // String length beyond the body.
    let mut long = vec![T_NEW_EPOCH];
    long.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(err(&long), FrameError::Truncated { .. }));
    // Log: bad flag, and raw_len disagreeing with an uncompressed payload.
    let mut log = vec![T_LOG];
    log.extend_from_slice(&[0; 16]);
    let mut bad_flag = log.clone();
    bad_flag.push(2);
    bad_flag.extend_from_slice(&[0; 8]);
    assert!(matches!(
        err(&bad_flag),
        FrameError::BadFlag { value: 2, .. }
    ));
    log.push(0);
    log.extend_from_slice(&5u32.to_le_bytes());
    let mismatch = with_str(log, b"abc");
    assert!(matches!(
        err(&mismatch),
        FrameError::LengthMismatch {
            raw_len: 5,
            data_len: 3
        }
    ));
}

#[test]
fn ack_received_tail_is_versioned_and_checked() {
    // The first version's Ack (durable only) is byte-identical to what it always was.
    assert_eq!(
        &encoded(&Frame::ack(7))[..],
        &body(&[&[T_ACK][..], &7u64.to_le_bytes()].concat())[..]
    );
    let ack = |tail: &[u8]| [&[T_ACK][..], &7u64.to_le_bytes(), tail].concat();
    let ok = decode(
        &mut body(&ack(&[&[1u8][..], &9u64.to_le_bytes()].concat())),
        MAX_FRAME,
    );
    assert_eq!(
        ok.unwrap(),
        Some(Frame::Ack {
            durable: 7,
            received: Some(9)
        })
    );
    let err = |bytes: &[u8]| decode(&mut body(bytes), MAX_FRAME).unwrap_err();
    // An unknown tail tag, a tag without its value, a value cut short, two tails.
    assert!(matches!(
        err(&ack(&[2])),
        FrameError::BadFlag {
            field: "Ack.tail",
            value: 2
        }
    ));
    assert!(matches!(
        err(&ack(&[1])),
        FrameError::Truncated {
            field: "Ack.received",
            ..
        }
    ));
    assert!(matches!(
        err(&ack(&[1, 0, 0, 0])),
        FrameError::Truncated {
            field: "Ack.received",
            ..
        }
    ));
    let twice = ack(&[&[1u8][..], &9u64.to_le_bytes(), &[1u8], &9u64.to_le_bytes()].concat());
    assert!(matches!(
        err(&twice),
        FrameError::TrailingBytes {
            frame: "Ack",
            extra: 9
        }
    ));
    // Received behind fsynced cannot be.
    let e = err(&ack(&[&[1u8][..], &6u64.to_le_bytes()].concat()));
    assert!(
        matches!(
            e,
            FrameError::AckOrder {
                received: 6,
                durable: 7
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("received < durable"), "{e}");
}

#[test]
fn hello_partial_tail_is_checked() {
    let err = |bytes: &[u8]| decode(&mut body(bytes), MAX_FRAME).unwrap_err();
    let mut hello = vec![T_HELLO, 1, 0];
    hello = with_str(hello, b"b");
    hello = with_str(hello, b"");
    hello.extend_from_slice(&7u64.to_le_bytes());
    let mut flag = hello.clone();
    flag.push(3);
    assert!(matches!(
        err(&flag),
        FrameError::BadFlag {
            field: "Hello.tail",
            value: 3
        }
    ));
    // A lane with a bad name, a lane given twice, and a partial after the lane are refused.
    let bad_lane = with_str([hello.clone(), vec![2]].concat(), b"a/b");
    assert!(matches!(err(&bad_lane), FrameError::BadLane(n) if n == "a/b"));
    let lane = with_str([hello.clone(), vec![2]].concat(), b"s1");
    let twice = with_str([lane.clone(), vec![2]].concat(), b"s1");
    assert!(matches!(
        err(&twice),
        FrameError::BadFlag {
            field: "Hello.tail",
            value: 2
        }
    ));
    let after = [lane.clone(), vec![1]].concat();
    assert!(matches!(
        err(&after),
        FrameError::BadFlag {
            field: "Hello.tail",
            value: 1
        }
    ));
    let ok = decode(&mut body(&lane), MAX_FRAME).unwrap().unwrap();
    assert!(matches!(ok, Frame::Hello { lane: Some(l), partial: None, .. } if l == "s1"));
    let mut too_long = with_str(
        {
            let mut h = hello.clone();
            h.push(1);
            h
        },
        RID.as_bytes(),
    );
    for v in [5u64, 10, 11] {
        too_long.extend_from_slice(&v.to_le_bytes());
    }
    assert!(matches!(
        err(&too_long),
        FrameError::PartialTooLong { have: 11, size: 10 }
    ));
    // Without the tail it is a Hello with no partial snapshot.
    let ok = decode(&mut body(&hello), MAX_FRAME).unwrap().unwrap();
    assert!(matches!(ok, Frame::Hello { partial: None, .. }));
}

#[test]
fn the_bad_frame_is_consumed_but_not_the_next() {
    let mut b = body(&[0]);
    encode(&Frame::SnapshotEnd, &mut b);
    assert!(decode(&mut b, MAX_FRAME).is_err());
    assert_eq!(decode(&mut b, MAX_FRAME).unwrap(), Some(Frame::SnapshotEnd));
}

/// Decodes until the buffer is exhausted or an error; must never panic.
fn drain(mut b: BytesMut, max: usize) {
    while let Ok(Some(_)) = decode(&mut b, max) {}
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x9e0_7e1a);
    for _ in 0..5000 {
        let n = rng.random_range(0..300);
        let mut v = vec![0u8; n];
        rng.fill_bytes(&mut v);
        drain(BytesMut::from(&v[..]), 256);
        // Same bytes behind a plausible envelope, so the body parser is reached.
        if n > 0 {
            let mut framed = body(&v);
            framed[HEADER_LEN] = rng.random_range(0..13);
            drain(framed, MAX_FRAME);
        }
    }
}

#[test]
fn mutated_valid_frames_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let originals: Vec<BytesMut> = every_variant().iter().map(encoded).collect();
    for i in 0..5000 {
        let mut b = originals[i % originals.len()].clone();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..b.len());
            b[at] = rng.random();
        }
        if rng.random_bool(0.3) {
            let cut = rng.random_range(0..b.len());
            b.truncate(cut);
        }
        drain(b, MAX_FRAME);
    }
}
