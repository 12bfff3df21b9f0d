//! Loopback tests of lanes on the agent link: two lanes as two streams of one QUIC connection,
//! each filling its own log, and a Hello naming an unknown lane refused with its close code.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::timeout;

use super::*;
use crate::config::LinkSettings;
use crate::link::certs::make_test_pki;
use crate::link::client::{open_lane, LinkConn};
use crate::link::{Compression, TlsFiles, PROTOCOL_VERSION};
use crate::log::{FsyncPolicy, LogConfig};
use crate::metrics::Health;
use crate::serve::peers::Lane;
use crate::upstream::agent::{run_lane, AgentUpstreamCtx};

const DEADLINE: Duration = Duration::from_secs(20);
const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn open(dir: &Path) -> Log {
    Log::open(LogConfig {
        dir: dir.to_path_buf(),
        segment_bytes: 1 << 20,
        max_bytes: 1 << 30,
        max_age: Duration::from_secs(3600),
        fsync: FsyncPolicy::EverySec,
        snapshot_after_bytes: 1 << 30,
        keep_page_cache: false,
    })
    .expect("open log")
}

/// A log whose epoch starts at a tiny RDB (CRC disabled) at `offset`, then holds `data`.
fn seeded(dir: &Path, replid: &str, offset: u64, data: &'static [u8]) -> Log {
    let log = open(dir);
    let mut w = log.begin_snapshot().expect("begin snapshot");
    w.write(b"REDIS0011\xff\0\0\0\0\0\0\0\0")
        .expect("write rdb");
    let meta = w.finish(replid, offset, 11, None).expect("finish rdb");
    log.start_epoch(meta).expect("start epoch");
    log.append(Bytes::from_static(data), 1).expect("append");
    log
}

fn settings() -> LinkSettings {
    LinkSettings {
        compression: Compression::None,
        zstd_level: 1,
        max_bandwidth: 0,
        heartbeat: Duration::from_millis(200),
        transport: crate::config::LinkSettings::default().transport,
    }
}

async fn wait_head(log: &Log, head: u64) {
    let mut rx = log.subscribe_head();
    timeout(DEADLINE, rx.wait_for(|h| *h >= head))
        .await
        .expect("log did not reach the upstream's head")
        .expect("log alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_lanes_share_one_connection_and_unknown_lanes_are_refused() {
    let pki = tempfile::tempdir().unwrap();
    make_test_pki(pki.path(), &["server", "client"]).unwrap();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let up_main = seeded(dirs[0].path(), A, 100, b"standalone");
    let up_lane = seeded(dirs[1].path(), B, 5000, b"lane one bytes");
    let (down_main, down_lane) = (open(dirs[2].path()), open(dirs[3].path()));

    let t = crate::config::LinkSettings::default().transport;
    let server = quic::server_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &TlsFiles::in_dir(pki.path(), "server"),
        &t,
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop_tx, stop) = watch::channel(false);
    let metrics = Metrics::new("server").unwrap();
    let lanes = LaneMap::default();
    let lane_peers = Arc::new(Peers::default());
    lanes.insert(
        "s1",
        Lane {
            log: up_lane.clone(),
            peers: lane_peers.clone(),
        },
    );
    let serve_ctx = AgentServeCtx {
        log: up_main.clone(),
        metrics,
        peers: Arc::new(Peers::default()),
        lanes,
        max_agents: 4,
        link: settings(),
        shutdown: stop.clone(),
    };
    tokio::spawn(run(server, serve_ctx));

    let client = quic::client_endpoint(&TlsFiles::in_dir(pki.path(), "client"), &t).unwrap();
    let conn = Arc::new(LinkConn::new(client.clone(), &addr.to_string(), "server"));
    let ctx = |log: &Log| AgentUpstreamCtx {
        name: "client".into(),
        addr: addr.to_string(),
        server_name: "server".into(),
        endpoint: client.clone(),
        link: settings(),
        log: log.clone(),
        metrics: Metrics::new("client").unwrap(),
        health: Health::new(),
    };
    tokio::spawn(run_lane(ctx(&down_main), conn.clone(), None, stop.clone()));
    tokio::spawn(run_lane(
        ctx(&down_lane),
        conn.clone(),
        Some("s1".into()),
        stop.clone(),
    ));
    wait_head(&down_main, up_main.status().head).await;
    wait_head(&down_lane, up_lane.status().head).await;
    assert_eq!(down_main.current(), up_main.current());
    assert_eq!(down_lane.current(), up_lane.current());
    let mut r = down_lane.reader(5001).unwrap();
    let got = r.try_next(100).unwrap().expect("lane bytes");
    assert_eq!(&got.data[..], b"lane one bytes");
    // The lane's peer is registered in the lane's registry, and it acknowledges there.
    timeout(DEADLINE, async {
        while lane_peers
            .snapshot()
            .first()
            .is_none_or(|p| p.state != PeerState::Streaming)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("lane peer never streamed");

    // A third stream on the same connection naming an unknown lane gets a clear refusal, and
    // the connection (with its two lanes) stays up.
    let live = conn.get().await.unwrap();
    let hello = Frame::Hello {
        version: PROTOCOL_VERSION,
        name: "client".into(),
        replid: None,
        next_offset: 0,
        partial: None,
        lane: Some("nope".into()),
    };
    let (_w, mut reader) = open_lane(&live, &hello).await.unwrap();
    let refusal = timeout(DEADLINE, reader.next()).await.unwrap().unwrap();
    assert!(
        matches!(&refusal, Some(Frame::Error { code, message })
            if *code == CloseCode::UnknownLane.as_u32() && message.contains("nope")),
        "{refusal:?}"
    );
    assert!(live.close_reason().is_none(), "the connection stays up");
    up_lane.append(Bytes::from_static(b" and more"), 2).unwrap();
    wait_head(&down_lane, up_lane.status().head).await;
    let _ = stop_tx.send(true);
}
