//! Unit tests of the upstream replica session's logic: GETACK handling, ACK timing, FACK, the
//! PSYNC plan (replid switch, full resync) and the backoff after `-LOADING`.

use super::*;

const GETACK: &[u8] = b"*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n";
const SET: &[u8] = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";

fn sends(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(b) => Some(String::from_utf8_lossy(b).replace("\r\n", " ")),
            _ => None,
        })
        .collect()
}

fn ack(a: u64, f: Option<u64>) -> String {
    String::from_utf8_lossy(&ack_command(a, f)).replace("\r\n", " ")
}

#[test]
fn getack_is_answered_at_once_with_what_was_received() {
    let now = Instant::now();
    let mut s = Streamer::new(100, 100, Acked::default(), AckSource::Local, false);
    let mut chunk = SET.to_vec();
    chunk.extend_from_slice(GETACK);
    let out = s.on_data(Bytes::from(chunk.clone()), now).unwrap();
    assert_eq!(out[0], Action::Append(Bytes::from(chunk.clone())));
    let head = 100 + chunk.len() as u64;
    assert_eq!(s.head(), head);
    // Nothing is durable yet, and without FACK nothing waits for the disk.
    assert_eq!(sends(&out), vec![ack(head, None)]);
    assert!(!out.contains(&Action::RequestSync));
    assert!(
        s.on_durable(head, now).is_empty(),
        "nothing pending any more"
    );
}

#[test]
fn getack_split_across_reads_is_answered_when_it_completes() {
    let now = Instant::now();
    let mut s = Streamer::new(0, 0, Acked::default(), AckSource::Local, false);
    let (a, b) = GETACK.split_at(20);
    assert!(sends(&s.on_data(Bytes::from_static(a), now).unwrap()).is_empty());
    let out = s.on_data(Bytes::from_static(b), now).unwrap();
    assert_eq!(sends(&out), vec![ack(GETACK.len() as u64, None)]);
}

#[test]
fn fack_forces_a_group_commit_and_follows_the_durable_offset() {
    let now = Instant::now();
    let mut s = Streamer::new(10, 10, Acked::default(), AckSource::Local, true);
    let out = s.on_data(Bytes::from_static(GETACK), now).unwrap();
    let head = 10 + GETACK.len() as u64;
    assert!(
        out.contains(&Action::RequestSync),
        "the durable part must not wait for a timer"
    );
    // WAIT is released at once; WAITAOF waits for the fsync.
    assert_eq!(sends(&out), vec![ack(head, Some(10))]);
    assert!(
        s.on_durable(20, now).is_empty(),
        "still short of the GETACK"
    );
    let out = s.on_durable(head, now);
    assert_eq!(sends(&out), vec![ack(head, Some(head))]);
    assert!(s.on_durable(head + 5, now).is_empty(), "answered once");
}

#[test]
fn a_getack_already_durable_needs_no_sync() {
    let now = Instant::now();
    let mut s = Streamer::new(0, 0, Acked::default(), AckSource::Local, true);
    s.on_durable(1_000, now);
    // FACK never exceeds ACK even if the durable value runs ahead of what we know.
    let out = s.on_data(Bytes::from_static(GETACK), now).unwrap();
    let head = GETACK.len() as u64;
    assert!(!out.contains(&Action::RequestSync));
    assert_eq!(sends(&out), vec![ack(head, Some(head))]);
}

#[test]
fn remote_acks_wait_for_the_slowest_downstream_agent() {
    let now = Instant::now();
    let mut s = Streamer::new(0, 0, Acked::default(), AckSource::Remote, true);
    let mut chunk = SET.to_vec();
    chunk.extend_from_slice(GETACK);
    let head = chunk.len() as u64;
    let out = s.on_data(Bytes::from(chunk), now).unwrap();
    assert!(sends(&out).is_empty(), "nothing reached region B yet");
    assert!(
        !out.contains(&Action::RequestSync),
        "local fsync is not what remote waits on"
    );
    assert!(
        out.contains(&Action::RequestRemoteSync(head)),
        "B is asked to commit the GETACK's bytes now"
    );
    assert!(
        s.on_durable(head, now).is_empty(),
        "local durability does not count"
    );
    let remote = |received, durable| Acked { received, durable };
    assert!(s.on_remote(remote(5, 5), now).is_empty(), "still short");
    // B has received the write (WAIT may return), not yet fsynced it (WAITAOF waits).
    assert_eq!(
        sends(&s.on_remote(remote(head, 0), now)),
        vec![ack(head, Some(5))]
    );
    assert_eq!(
        sends(&s.on_remote(remote(head, head), now)),
        vec![ack(head, Some(head))]
    );
    // A remote value ahead of what we hold is capped at our head.
    assert_eq!(s.values(), (head, Some(head)));
    s.on_remote(remote(head + 100, head + 100), now);
    assert_eq!(s.values(), (head, Some(head)));
}

#[test]
fn remote_ack_is_what_b_received_and_fack_what_it_fsynced() {
    let now = Instant::now();
    let remote = |received, durable| Acked { received, durable };
    let mut s = Streamer::new(1000, 1000, remote(0, 0), AckSource::Remote, true);
    s.on_remote(remote(900, 400), now);
    assert_eq!(s.values(), (900, Some(400)));
    // Without FACK support the master hears only the received part.
    let mut s = Streamer::new(1000, 1000, remote(900, 400), AckSource::Remote, false);
    assert_eq!(s.values(), (900, None));
    assert_eq!(sends(&s.ack_now(now)), vec![ack(900, None)]);
    // ... and nobody is asked to fsync for it.
    let out = s.on_data(Bytes::from_static(GETACK), now).unwrap();
    assert!(!out
        .iter()
        .any(|a| matches!(a, Action::RequestRemoteSync(_) | Action::RequestSync)));
    // What B made durable already needs no commit.
    let mut s = Streamer::new(0, 0, remote(0, 0), AckSource::Remote, true);
    s.on_remote(remote(5_000, 5_000), now);
    let out = s.on_data(Bytes::from_static(GETACK), now).unwrap();
    assert!(!out
        .iter()
        .any(|a| matches!(a, Action::RequestRemoteSync(_))));
}

#[test]
fn periodic_ack_once_a_second() {
    let t0 = Instant::now();
    let mut s = Streamer::new(7, 7, Acked::default(), AckSource::Local, false);
    assert_eq!(sends(&s.on_tick(t0)), vec![ack(7, None)]);
    assert!(s.on_tick(t0 + Duration::from_millis(500)).is_empty());
    assert_eq!(s.next_tick(t0), t0 + ACK_PERIOD);
    s.on_data(Bytes::from_static(SET), t0).unwrap();
    let head = 7 + SET.len() as u64;
    assert_eq!(sends(&s.on_tick(t0 + ACK_PERIOD)), vec![ack(head, None)]);
    assert_eq!(sends(&s.ack_now(t0)), vec![ack(head, None)]);
}

#[test]
fn a_stream_joined_mid_command_still_finds_later_getacks() {
    let now = Instant::now();
    let mut s = Streamer::new(0, 0, Acked::default(), AckSource::Local, false);
    let mut chunk = SET[9..].to_vec();
    chunk.extend_from_slice(GETACK);
    let out = s.on_data(Bytes::from(chunk.clone()), now).unwrap();
    assert_eq!(sends(&out), vec![ack(chunk.len() as u64, None)]);
}

#[test]
fn psync_plans() {
    let a = "a".repeat(40);
    let b = "b".repeat(40);
    let cont = |id: Option<&str>| PsyncReply::Continue {
        replid: id.map(str::to_string),
    };
    assert_eq!(
        plan_psync(Some((&a, 9)), cont(Some(&b))),
        PsyncPlan::Continue {
            switch: Some(b.clone())
        },
        "+CONTINUE <new id> records a replid switch"
    );
    assert_eq!(
        plan_psync(Some((&a, 9)), cont(Some(&a.to_uppercase()))),
        PsyncPlan::Continue { switch: None },
        "replids compare case-insensitively"
    );
    assert_eq!(
        plan_psync(Some((&a, 9)), cont(None)),
        PsyncPlan::Continue { switch: None }
    );
    let full = PsyncReply::Full {
        replid: b.clone(),
        offset: 5,
    };
    assert_eq!(
        plan_psync(None, full.clone()),
        PsyncPlan::Full {
            replid: b.clone(),
            offset: 5,
            reason: "first_sync"
        }
    );
    assert_eq!(
        plan_psync(Some((&a, 9)), full),
        PsyncPlan::Full {
            replid: b,
            offset: 5,
            reason: "new_epoch"
        }
    );
}

#[test]
fn backoff_after_loading_auth_and_failed_full_syncs() {
    let mut r = Retry::default();
    assert_eq!(
        r.after(Phase::Handshake, Failure::NotReady),
        Duration::from_secs(1)
    );
    assert_eq!(
        r.after(Phase::Handshake, Failure::NotReady),
        Duration::from_secs(1),
        "-LOADING does not grow"
    );
    assert_eq!(
        r.after(Phase::Handshake, Failure::Auth),
        Duration::from_secs(10)
    );
    assert_eq!(
        r.after(Phase::Handshake, Failure::Other),
        Duration::from_millis(200)
    );
    assert_eq!(
        r.after(Phase::Handshake, Failure::Other),
        Duration::from_millis(400)
    );
    for _ in 0..10 {
        r.after(Phase::Handshake, Failure::Other);
    }
    assert_eq!(
        r.after(Phase::Handshake, Failure::Other),
        Duration::from_millis(5_000)
    );
    // Full syncs that fail make the origin fork: 5 s, 20 s, 80 s, … 300 s.
    assert_eq!(
        r.after(Phase::FullSync, Failure::NotReady),
        Duration::from_secs(5)
    );
    assert_eq!(
        r.after(Phase::FullSync, Failure::NotReady),
        Duration::from_secs(20)
    );
    assert_eq!(
        r.after(Phase::FullSync, Failure::NotReady),
        Duration::from_secs(80)
    );
    assert_eq!(
        r.after(Phase::FullSync, Failure::NotReady),
        Duration::from_secs(300)
    );
    // Streaming resets everything.
    assert_eq!(
        r.after(Phase::Streaming, Failure::Other),
        Duration::from_millis(200)
    );
    assert_eq!(r.failed_full_syncs, 0);
}
