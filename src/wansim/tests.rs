//! In-process tests of the relay on loopback: an echo server behind a [`WanSim`], deadlines
//! instead of fixed sleeps, and only lower bounds on time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{timeout, Instant};

use super::*;

const DEADLINE: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched for, once the drop counters prove the packets are gone.
const QUIET: Duration = Duration::from_millis(100);

async fn bind() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// Echoes every datagram to its sender.
async fn echo_server() -> SocketAddr {
    let sock = bind().await;
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let _ = sock.send_to(&buf[..n], from).await;
        }
    });
    addr
}

/// Replies with the sender's address as text.
async fn whoami_server() -> SocketAddr {
    let sock = bind().await;
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((_, from)) = sock.recv_from(&mut buf).await {
            let _ = sock.send_to(from.to_string().as_bytes(), from).await;
        }
    });
    addr
}

/// Counts the bytes it receives.
async fn sink_server() -> (SocketAddr, Arc<AtomicU64>) {
    let sock = bind().await;
    let addr = sock.local_addr().unwrap();
    let bytes = Arc::new(AtomicU64::new(0));
    let counted = bytes.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, _)) = sock.recv_from(&mut buf).await {
            counted.fetch_add(n as u64, Relaxed);
        }
    });
    (addr, bytes)
}

fn opts(forward: SocketAddr) -> WanSimOptions {
    WanSimOptions {
        forward,
        seed: Some(1),
        ..WanSimOptions::default()
    }
}

async fn recv_within(sock: &UdpSocket, d: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65_536];
    match timeout(d, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// Sends `msg` through the relay and waits for the echo.
async fn round_trip(sim: &WanSim, client: &UdpSocket, msg: &[u8]) -> Vec<u8> {
    client.send_to(msg, sim.local_addr()).await.unwrap();
    recv_within(client, DEADLINE)
        .await
        .expect("no reply before the deadline")
}

/// Polls the counters until `cond` holds; panics at the deadline.
async fn wait_stats(sim: &WanSim, what: &str, cond: impl Fn(&WanSimStats) -> bool) {
    let end = Instant::now() + DEADLINE;
    loop {
        let s = sim.stats();
        if cond(&s) {
            return;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn packets_round_trip_and_are_counted() {
    let sim = WanSim::start(opts(echo_server().await)).await.unwrap();
    let client = bind().await;
    for i in 0..10u8 {
        assert_eq!(round_trip(&sim, &client, &[i; 100]).await, vec![i; 100]);
    }
    let s = sim.shutdown().await;
    assert_eq!((s.up_packets, s.up_bytes), (10, 1000));
    assert_eq!((s.down_packets, s.down_bytes), (10, 1000));
    assert_eq!(
        (s.clients_opened, s.dropped_loss, s.dropped_queue),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn delay_applies_each_way() {
    let o = WanSimOptions {
        delay: Duration::from_millis(20),
        ..opts(echo_server().await)
    };
    let sim = WanSim::start(o).await.unwrap();
    let client = bind().await;
    for _ in 0..3 {
        let t = Instant::now();
        round_trip(&sim, &client, b"ping").await;
        let rtt = t.elapsed();
        assert!(rtt >= Duration::from_millis(40), "rtt {rtt:?}");
    }
    sim.set_delay(Duration::from_millis(30));
    let t = Instant::now();
    round_trip(&sim, &client, b"ping").await;
    assert!(
        t.elapsed() >= Duration::from_millis(60),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn total_loss_drops_everything() {
    let o = WanSimOptions {
        loss: 1.0,
        ..opts(echo_server().await)
    };
    let sim = WanSim::start(o).await.unwrap();
    let client = bind().await;
    for _ in 0..20 {
        client.send_to(b"x", sim.local_addr()).await.unwrap();
    }
    wait_stats(&sim, "20 losses", |s| s.dropped_loss == 20).await;
    assert_eq!(recv_within(&client, QUIET).await, None);
    assert_eq!(sim.stats().up_packets, 0);
    // Live change: loss off, traffic flows again.
    sim.set_loss(0.0);
    assert_eq!(round_trip(&sim, &client, b"back").await, b"back");
}

#[tokio::test]
async fn blackhole_switch() {
    let sim = WanSim::start(opts(echo_server().await)).await.unwrap();
    let client = bind().await;
    assert_eq!(round_trip(&sim, &client, b"a").await, b"a");
    sim.set_blackhole(true);
    assert!(sim.stats().outage);
    for _ in 0..5 {
        client.send_to(b"lost", sim.local_addr()).await.unwrap();
    }
    wait_stats(&sim, "5 outage drops", |s| s.dropped_outage == 5).await;
    assert_eq!(recv_within(&client, QUIET).await, None);
    sim.set_blackhole(false);
    assert_eq!(round_trip(&sim, &client, b"b").await, b"b");
}

#[tokio::test]
async fn outage_file_toggles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outage");
    let o = WanSimOptions {
        outage_file: Some(path.clone()),
        ..opts(echo_server().await)
    };
    let sim = WanSim::start(o).await.unwrap();
    let client = bind().await;
    assert_eq!(round_trip(&sim, &client, b"a").await, b"a");
    std::fs::write(&path, b"").unwrap();
    wait_stats(&sim, "outage on", |s| s.outage).await;
    client.send_to(b"lost", sim.local_addr()).await.unwrap();
    wait_stats(&sim, "an outage drop", |s| s.dropped_outage == 1).await;
    assert_eq!(recv_within(&client, QUIET).await, None);
    std::fs::remove_file(&path).unwrap();
    wait_stats(&sim, "outage off", |s| !s.outage).await;
    assert_eq!(round_trip(&sim, &client, b"b").await, b"b");
}

#[tokio::test]
async fn timed_outage() {
    let o = WanSimOptions {
        outage_after: Some(Duration::ZERO),
        outage_for: Some(Duration::from_secs(3600)),
        ..opts(echo_server().await)
    };
    let sim = WanSim::start(o).await.unwrap();
    assert!(sim.stats().outage);
    let client = bind().await;
    client.send_to(b"lost", sim.local_addr()).await.unwrap();
    wait_stats(&sim, "an outage drop", |s| s.dropped_outage == 1).await;
    assert_eq!(recv_within(&client, QUIET).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_paces_two_megabytes() {
    let (server, received) = sink_server().await;
    let o = WanSimOptions {
        rate_bytes_per_sec: 1_000_000,
        queue_bytes: Some(4 << 20),
        ..opts(server)
    };
    let sim = WanSim::start(o).await.unwrap();
    let client = bind().await;
    let t = Instant::now();
    for i in 0..2000 {
        client
            .send_to(&[0u8; 1000], sim.local_addr())
            .await
            .unwrap();
        if i % 16 == 15 {
            // Keep within the relay's socket buffer: this tests the relay, not the kernel.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let end = Instant::now() + Duration::from_secs(10);
    while received.load(Relaxed) < 1_500_000 {
        assert!(
            Instant::now() < end,
            "only {} B arrived",
            received.load(Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // 1.5 MB minus the 16 KiB burst at 1 MB/s takes at least ~1.48 s.
    assert!(
        t.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(sim.stats().dropped_queue, 0);
}

#[tokio::test]
async fn tiny_queue_tail_drops() {
    let (server, _) = sink_server().await;
    let o = WanSimOptions {
        rate_bytes_per_sec: 100_000,
        queue_bytes: Some(4096),
        ..opts(server)
    };
    let sim = WanSim::start(o).await.unwrap();
    let client = bind().await;
    for _ in 0..200 {
        client
            .send_to(&[0u8; 1000], sim.local_addr())
            .await
            .unwrap();
    }
    wait_stats(&sim, "queue drops", |s| s.dropped_queue > 0).await;
}

#[tokio::test]
async fn non_loopback_is_refused() {
    for (listen, forward) in [("0.0.0.0:0", "127.0.0.1:9"), ("127.0.0.1:0", "10.1.2.3:9")] {
        let o = WanSimOptions {
            listen: listen.parse().unwrap(),
            ..opts(forward.parse().unwrap())
        };
        let err = WanSim::start(o).await.err().expect("must refuse");
        assert!(matches!(err, WanSimError::NotLoopback { .. }), "{err}");
    }
}

#[tokio::test]
async fn busy_listen_port_is_a_bind_error() {
    let taken = bind().await;
    let o = WanSimOptions {
        listen: taken.local_addr().unwrap(),
        ..opts(echo_server().await)
    };
    let err = WanSim::start(o).await.err().expect("port is taken");
    assert!(matches!(err, WanSimError::Bind { .. }), "{err}");
}

#[tokio::test]
async fn each_client_gets_its_own_upstream_socket() {
    let sim = WanSim::start(opts(whoami_server().await)).await.unwrap();
    let (a, b) = (bind().await, bind().await);
    let seen_a = round_trip(&sim, &a, b"?").await;
    let seen_b = round_trip(&sim, &b, b"?").await;
    assert_ne!(seen_a, seen_b);
    assert_eq!(
        round_trip(&sim, &a, b"?").await,
        seen_a,
        "mapping is reused"
    );
    for seen in [&seen_a, &seen_b] {
        let addr: SocketAddr = String::from_utf8_lossy(seen).parse().unwrap();
        assert!(addr.ip().is_loopback());
        assert_ne!(addr, a.local_addr().unwrap());
        assert_ne!(addr, b.local_addr().unwrap());
    }
    let s = sim.stats();
    assert_eq!((s.clients_active, s.clients_opened), (2, 2));
}

#[tokio::test]
async fn duration_ends_the_relay() {
    let o = WanSimOptions {
        duration: Some(Duration::from_millis(200)),
        ..opts(echo_server().await)
    };
    let t = Instant::now();
    let sim = WanSim::start(o).await.unwrap();
    timeout(DEADLINE, sim.run_until_done()).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn shutdown_handle_stops_run_until_done() {
    let sim = WanSim::start(opts(echo_server().await)).await.unwrap();
    let client = bind().await;
    round_trip(&sim, &client, b"x").await;
    let handle = sim.shutdown_handle();
    let run = tokio::spawn(sim.run_until_done());
    handle.shutdown();
    let stats = timeout(DEADLINE, run).await.unwrap().unwrap();
    assert_eq!(stats.up_packets, 1);
    assert_eq!(stats.clients_active, 0);
}

/// 40 datagrams of 1000 B and one of 500 B in one GSO send.
fn gso_payload() -> Vec<u8> {
    (0..40 * 1000 + 500).map(|i| (i / 1000) as u8).collect()
}

#[tokio::test]
async fn gso_batches_are_relayed_datagram_by_datagram() {
    let server = echo_server().await;
    let sim = WanSim::start(opts(server)).await.unwrap();
    let client = sock::Sock::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let payload = gso_payload();
    client.send(sim.local_addr(), &payload, 1000).await.unwrap();
    wait_stats(&sim, "41 datagrams each way", |s| {
        (s.up_packets, s.up_bytes, s.down_packets, s.down_bytes) == (41, 40_500, 41, 40_500)
    })
    .await;
    // The echoes come back as the same 41 datagrams, in order (GRO may join them on receipt).
    let mut got = Vec::new();
    let mut sizes = Vec::new();
    let mut batch = sock::RecvBatch::new();
    while got.len() < payload.len() {
        let n = timeout(DEADLINE, client.recv(&mut batch))
            .await
            .expect("echoes before the deadline")
            .unwrap();
        for i in 0..n {
            let (_, bytes, stride) = batch.get(i);
            sizes.extend(bytes.chunks(stride).map(<[u8]>::len));
            got.extend_from_slice(bytes);
        }
    }
    assert_eq!(got, payload);
    assert_eq!(sizes.len(), 41);
    assert!(sizes[..40].iter().all(|n| *n == 1000) && sizes[40] == 500);
}

#[tokio::test]
async fn loss_applies_to_each_datagram_of_a_gso_batch() {
    let (server, received) = sink_server().await;
    let o = WanSimOptions {
        loss: 0.5,
        ..opts(server)
    };
    let sim = WanSim::start(o).await.unwrap();
    let client = sock::Sock::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    client
        .send(sim.local_addr(), &gso_payload(), 1000)
        .await
        .unwrap();
    wait_stats(&sim, "41 datagrams passed or lost", |s| {
        s.up_packets + s.dropped_loss == 41
    })
    .await;
    let s = sim.stats();
    // Seeded: some of the batch is lost and some passes, never the batch as a whole.
    assert!(s.dropped_loss > 0 && s.up_packets > 0, "{s:?}");
    let end = Instant::now() + DEADLINE;
    while received.load(Relaxed) != s.up_bytes {
        assert!(
            Instant::now() < end,
            "sink got {} of {} B",
            received.load(Relaxed),
            s.up_bytes
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
