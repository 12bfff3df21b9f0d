//! Unit tests of the control stream: codec, both state machines without sockets, and the
//! shells over an in-memory duplex.

use super::*;
use crate::cluster::{LaneSlots, SlotRange};

fn map(version: u64, lanes: &[(&str, u16, u16)]) -> SlotMap {
    SlotMap::new(
        version,
        lanes
            .iter()
            .map(|&(n, a, b)| LaneSlots {
                name: n.into(),
                alias: format!("{n}-alias"),
                ranges: vec![SlotRange::new(a, b)],
            })
            .collect(),
    )
    .unwrap()
}

fn three(version: u64) -> SlotMap {
    map(
        version,
        &[("s0", 0, 5460), ("s1", 5461, 10922), ("s2", 10923, 16383)],
    )
}

#[test]
fn codec_round_trips_and_waits_for_whole_frames() {
    let frames = vec![
        ControlFrame::SlotMap(three(7)),
        ControlFrame::Keepalive { version: 7 },
        ControlFrame::Ack { version: 7 },
    ];
    let mut wire = BytesMut::new();
    for f in &frames {
        encode(f, &mut wire);
    }
    // Byte by byte: never a partial frame out, never a byte lost.
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in wire.iter() {
        buf.put_u8(*b);
        while let Some(f) = decode(&mut buf).unwrap() {
            got.push(f);
        }
    }
    assert_eq!(got, frames);
    assert!(buf.is_empty());
}

#[test]
fn malformed_control_frames_are_clear_errors() {
    let mut b = BytesMut::from(&(u32::MAX).to_le_bytes()[..]);
    assert!(decode(&mut b).unwrap_err().to_string().contains("exceeds"));
    let mut b = BytesMut::from(&[1, 0, 0, 0, 99][..]);
    assert_eq!(
        decode(&mut b).unwrap_err().to_string(),
        "unknown control frame type 99"
    );
    let mut b = BytesMut::from(&[3, 0, 0, 0, T_ACK, 1, 2][..]);
    assert!(decode(&mut b).unwrap_err().to_string().contains("Ack"));
    let mut b = BytesMut::from(&[0, 0, 0, 0][..]);
    assert!(decode(&mut b).is_err());
    // A slot map that overlaps is refused with the slot map's own message.
    let mut bad = three(1);
    bad.lanes[1].ranges[0].first = 100;
    let mut b = BytesMut::new();
    let body = crate::cluster::slotmap_codec::encode(&bad);
    b.put_u32_le(body.len() as u32 + 1);
    b.put_u8(T_SLOT_MAP);
    b.put_slice(&body);
    let e = decode(&mut b).unwrap_err().to_string();
    assert!(
        e.starts_with("slot map from upstream: slot 100 is owned by both"),
        "{e}"
    );
}

#[test]
fn server_sends_each_new_version_once_and_keepalives_when_quiet() {
    let t0 = Instant::now();
    let ka = Duration::from_secs(1);
    let mut s = ControlServer::new(ka, t0);
    assert!(
        s.on_map(None, t0).is_empty(),
        "nothing to send before a map"
    );
    let m1 = three(1);
    assert_eq!(
        s.on_map(Some(&m1), t0),
        vec![Action::Send(ControlFrame::SlotMap(m1.clone()))]
    );
    assert!(
        s.on_map(Some(&m1), t0).is_empty(),
        "same version: not again"
    );
    assert!(s.on_tick(t0 + Duration::from_millis(999)).is_empty());
    assert_eq!(
        s.on_tick(t0 + ka),
        vec![Action::Send(ControlFrame::Keepalive { version: 1 })]
    );
    assert_eq!(s.deadline(), t0 + ka + ka);
    let m2 = three(2);
    let t = t0 + Duration::from_millis(1500);
    assert_eq!(
        s.on_map(Some(&m2), t),
        vec![Action::Send(ControlFrame::SlotMap(m2))]
    );
    assert_eq!(s.deadline(), t + ka, "a map resets the keepalive timer");
    assert!(s.on_frame(ControlFrame::Ack { version: 2 }).is_empty());
    assert_eq!(s.acked(), Some(2));
}

#[test]
fn server_closes_on_bad_acks_frames_and_version_regressions() {
    let t0 = Instant::now();
    let mut s = ControlServer::new(Duration::from_secs(1), t0);
    s.on_map(Some(&three(5)), t0);
    let bad = |a: Vec<Action>| matches!(&a[..], [Action::Close(CloseReason::Protocol(_))]);
    assert!(bad(s.on_frame(ControlFrame::Ack { version: 6 })));
    assert!(bad(s.on_frame(ControlFrame::Keepalive { version: 5 })));
    assert!(bad(s.on_frame(ControlFrame::SlotMap(three(5)))));
    assert!(bad(s.on_map(Some(&three(4)), t0)));
}

#[test]
fn client_applies_and_acks_maps_and_refuses_regressions() {
    let t0 = Instant::now();
    let idle = Duration::from_secs(10);
    let mut c = ControlClient::new(idle, t0);
    // The first map of a stream is applied whatever its version.
    let m3 = three(3);
    assert_eq!(
        c.on_frame(ControlFrame::SlotMap(m3.clone()), t0),
        vec![
            Action::Apply(m3),
            Action::Send(ControlFrame::Ack { version: 3 })
        ]
    );
    assert_eq!(c.current(), Some(3));
    assert!(c
        .on_frame(ControlFrame::Keepalive { version: 3 }, t0)
        .is_empty());
    let m4 = map(4, &[("s0", 0, 16383)]);
    assert_eq!(
        c.on_frame(ControlFrame::SlotMap(m4.clone()), t0)[0],
        Action::Apply(m4)
    );
    let back = c.on_frame(ControlFrame::SlotMap(three(2)), t0);
    assert!(
        matches!(&back[..], [Action::Close(CloseReason::Protocol(m))] if m.contains("went back from 4 to 2")),
        "{back:?}"
    );
    assert!(matches!(
        &c.on_frame(ControlFrame::Ack { version: 1 }, t0)[..],
        [Action::Close(CloseReason::Protocol(_))]
    ));
}

#[test]
fn client_gives_up_on_a_silent_stream_and_any_frame_resets_the_timer() {
    let t0 = Instant::now();
    let idle = Duration::from_secs(10);
    let mut c = ControlClient::new(idle, t0);
    assert!(c.on_tick(t0 + Duration::from_secs(9)).is_empty());
    c.on_frame(
        ControlFrame::Keepalive { version: 0 },
        t0 + Duration::from_secs(9),
    );
    assert!(c.on_tick(t0 + Duration::from_secs(18)).is_empty());
    assert_eq!(
        c.on_tick(t0 + Duration::from_secs(19)),
        vec![Action::Close(CloseReason::Idle(Duration::from_secs(10)))]
    );
}

#[tokio::test]
async fn shells_carry_maps_over_a_duplex_and_the_server_sees_acks() {
    let (up_side, down_side) = tokio::io::duplex(1 << 16);
    let (up_r, up_w) = tokio::io::split(up_side);
    let (down_r, down_w) = tokio::io::split(down_side);
    let (map_tx, map_rx) = watch::channel(Some(three(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (stop_client_tx, stop_client_rx) = watch::channel(false);
    let server = tokio::spawn(serve(
        up_r,
        up_w,
        map_rx,
        Duration::from_millis(50),
        stop_rx,
    ));
    let (applied_tx, mut applied_rx) = watch::channel(None);
    let client = tokio::spawn(async move {
        follow(
            down_r,
            down_w,
            &applied_tx,
            Duration::from_secs(5),
            stop_client_rx,
        )
        .await
    });
    let wait_for = |rx: &mut watch::Receiver<Option<SlotMap>>, v: u64| {
        let mut rx = rx.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(5),
                rx.wait_for(|m| m.as_ref().is_some_and(|m| m.version == v)),
            )
            .await
            .expect("map arrives")
            .expect("sender alive")
            .clone()
        }
    };
    assert_eq!(wait_for(&mut applied_rx, 1).await, Some(three(1)));
    let m2 = map(2, &[("s0", 0, 100), ("s9", 101, 16383)]);
    map_tx.send(Some(m2.clone())).unwrap();
    assert_eq!(wait_for(&mut applied_rx, 2).await, Some(m2));
    // The client ends cleanly on shutdown, and the server when its downstream has gone.
    stop_client_tx.send(true).unwrap();
    client.await.unwrap().unwrap();
    server.await.unwrap().unwrap();
    drop(stop_tx);
}

#[tokio::test]
async fn follow_ends_with_an_error_when_the_upstream_goes_away() {
    let (up_side, down_side) = tokio::io::duplex(1 << 16);
    let (down_r, down_w) = tokio::io::split(down_side);
    let (tx, _rx) = watch::channel(None);
    let (_stop_tx, stop_rx) = watch::channel(false);
    drop(up_side);
    let e = follow(down_r, down_w, &tx, Duration::from_secs(5), stop_rx)
        .await
        .unwrap_err();
    assert!(matches!(e, ControlError::Closed), "{e}");
}
