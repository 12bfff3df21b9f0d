//! Loopback tests of the QUIC endpoints: mutual TLS accepted, every kind of stranger refused, and a stalled lane stream that does not block another.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::timeout;

use super::*;
use crate::link::certs::make_test_pki;
use crate::link::frame::{Frame, MAX_FRAME, PROTOCOL_VERSION};
use crate::link::stream::{FrameReader, FrameWriter};

const DEADLINE: Duration = Duration::from_secs(10);
const RID: &str = "8f1e0c4a2b3d5e6f708192a3b4c5d6e7f8091a2b";

struct Pki {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    ours: std::path::PathBuf,
    theirs: std::path::PathBuf,
}

/// Our deployment's CA with nodes "server" and "client"; an unrelated CA with node "rogue".
fn pki() -> Pki {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    make_test_pki(ours.path(), &["server", "client"]).unwrap();
    make_test_pki(theirs.path(), &["rogue"]).unwrap();
    Pki {
        ours: ours.path().to_path_buf(),
        theirs: theirs.path().to_path_buf(),
        _dirs: (ours, theirs),
    }
}

fn files(dir: &Path, node: &str) -> TlsFiles {
    TlsFiles::in_dir(dir, node)
}

fn server(p: &Pki) -> (quinn::Endpoint, SocketAddr) {
    let t = crate::config::LinkSettings::default().transport;
    let ep = server_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &files(&p.ours, "server"),
        &t,
    )
    .unwrap();
    let addr = ep.local_addr().unwrap();
    (ep, addr)
}

/// The server side of a refused handshake: the error is there to log, with the peer address.
async fn server_sees_refusal(ep: &quinn::Endpoint, client_port: u16) -> String {
    let incoming = timeout(DEADLINE, ep.accept()).await.unwrap().unwrap();
    let remote = incoming.remote_address();
    assert_eq!(remote.port(), client_port);
    let err = timeout(DEADLINE, accept(incoming))
        .await
        .unwrap()
        .expect_err("the handshake must fail");
    // What the accept loop logs: `tracing::warn!(peer = %remote, "handshake refused: {err}")`.
    let line = format!("peer {remote}: handshake refused: {err}");
    eprintln!("server: {line}");
    assert!(matches!(err, LinkError::Connection { addr, .. } if addr == remote));
    line
}

/// The client side of a refused handshake: either connect fails, or the connection is closed
/// by the server right after (TLS 1.3 finishes the client's handshake before the server has
/// judged the client certificate).
async fn client_refused(ep: &quinn::Endpoint, addr: SocketAddr, name: &str) -> String {
    match timeout(DEADLINE, connect(ep, addr, name)).await.unwrap() {
        Err(e) => {
            eprintln!("client: connect failed: {e}");
            e.to_string()
        }
        Ok(conn) => {
            let closed = timeout(DEADLINE, async {
                let (mut send, mut recv) = conn.open_bi().await?;
                send.write_all(b"anyone there?").await?;
                send.finish()?;
                recv.read_to_end(100).await?;
                Ok::<_, Box<dyn std::error::Error>>(())
            })
            .await
            .unwrap();
            let e = closed.expect_err("the server must refuse").to_string();
            let e = format!("{e} ({:?})", conn.close_reason());
            eprintln!("client: connected, then closed: {e}");
            e
        }
    }
}

#[tokio::test]
async fn mutual_tls_loopback_carries_frames() {
    let p = pki();
    let (server_ep, addr) = server(&p);
    let frames = vec![
        Frame::Hello {
            version: PROTOCOL_VERSION,
            name: "client".into(),
            replid: Some(RID.into()),
            next_offset: 1001,
            partial: None,
            lane: None,
        },
        Frame::log(1001, 17, Bytes::from(vec![b'z'; 300_000])),
        Frame::ack(1000),
    ];

    let echo = tokio::spawn(async move {
        let incoming = server_ep.accept().await.ok_or("endpoint closed")?;
        let conn = accept(incoming).await?;
        let peer = peer_name(&conn);
        let (send, recv) = conn.accept_bi().await?;
        let mut reader = FrameReader::new(recv, MAX_FRAME);
        let mut writer = FrameWriter::new(send);
        let mut got = Vec::new();
        while let Some(f) = reader.next().await? {
            got.push(f);
        }
        writer.send_all(&got).await?;
        writer.finish()?;
        conn.closed().await;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(peer)
    });

    let client_ep = client_endpoint(
        &files(&p.ours, "client"),
        &crate::config::LinkSettings::default().transport,
    )
    .unwrap();
    let conn = timeout(DEADLINE, connect(&client_ep, addr, "server"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(peer_name(&conn).as_deref(), Some("server"));
    assert_eq!(
        negotiated_alpn(&conn),
        Some(crate::link::ALPN_V3.to_vec()),
        "two agents of this version speak protocol 3"
    );
    assert!(crate::link::proto::commit_requests(
        negotiated_alpn(&conn).as_deref()
    ));
    let (send, recv) = conn.open_bi().await.unwrap();
    let mut writer = FrameWriter::new(send);
    writer.send_all(&frames).await.unwrap();
    writer.finish().unwrap();
    let mut reader = FrameReader::new(recv, MAX_FRAME);
    let mut back = Vec::new();
    while let Some(f) = timeout(DEADLINE, reader.next()).await.unwrap().unwrap() {
        back.push(f);
    }
    assert_eq!(back, frames);
    conn.close(0u32.into(), b"done");
    let server_saw = timeout(DEADLINE, echo).await.unwrap().unwrap().unwrap();
    assert_eq!(server_saw.as_deref(), Some("client"));
    client_ep.wait_idle().await;
}

#[tokio::test]
async fn client_cert_from_another_ca_is_refused() {
    let p = pki();
    let (server_ep, addr) = server(&p);
    // Trusts our CA (so it accepts the server) but presents a certificate of another CA.
    let rogue = TlsFiles {
        ca: p.ours.join("ca.pem"),
        ..files(&p.theirs, "rogue")
    };
    let client_ep =
        client_endpoint(&rogue, &crate::config::LinkSettings::default().transport).unwrap();
    let port = client_ep.local_addr().unwrap().port();
    let (server_line, client_err) = tokio::join!(
        server_sees_refusal(&server_ep, port),
        client_refused(&client_ep, addr, "server")
    );
    assert!(server_line.contains("127.0.0.1"), "{server_line}");
    assert!(!client_err.is_empty());
}

#[tokio::test]
async fn wholly_foreign_pki_is_refused_both_ways() {
    let p = pki();
    let (server_ep, addr) = server(&p);
    let client_ep = client_endpoint(
        &files(&p.theirs, "rogue"),
        &crate::config::LinkSettings::default().transport,
    )
    .unwrap();
    let port = client_ep.local_addr().unwrap().port();
    let (_, client_err) = tokio::join!(
        server_sees_refusal(&server_ep, port),
        client_refused(&client_ep, addr, "server")
    );
    // The client judges the server first: its certificate is from an unknown issuer.
    assert!(client_err.to_lowercase().contains("issuer"), "{client_err}");
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let p = pki();
    let (server_ep, addr) = server(&p);
    let config = tls::client_config_without_cert(&p.ours.join("ca.pem")).unwrap();
    let client_ep =
        client_endpoint_with_tls(config, &crate::config::LinkSettings::default().transport)
            .unwrap();
    let port = client_ep.local_addr().unwrap().port();
    let (server_line, _) = tokio::join!(
        server_sees_refusal(&server_ep, port),
        client_refused(&client_ep, addr, "server")
    );
    assert!(
        server_line.to_lowercase().contains("certificate"),
        "{server_line}"
    );
}

#[tokio::test]
async fn client_with_other_alpn_is_refused() {
    let p = pki();
    let (server_ep, addr) = server(&p);
    let mut config = tls::client_config(&files(&p.ours, "client")).unwrap();
    config.alpn_protocols = vec![b"georelay/999".to_vec()];
    let client_ep =
        client_endpoint_with_tls(config, &crate::config::LinkSettings::default().transport)
            .unwrap();
    let port = client_ep.local_addr().unwrap().port();
    let (server_line, _) = tokio::join!(
        server_sees_refusal(&server_ep, port),
        client_refused(&client_ep, addr, "server")
    );
    assert!(!server_line.is_empty());
}

#[tokio::test]
async fn a_first_version_client_still_gets_protocol_1() {
    older_client_gets(&[crate::link::ALPN], crate::link::ALPN, false).await;
}

#[tokio::test]
async fn a_second_version_client_gets_protocol_2_without_commits() {
    older_client_gets(
        &[crate::link::ALPN_V2, crate::link::ALPN],
        crate::link::ALPN_V2,
        true,
    )
    .await;
    assert!(!crate::link::proto::commit_requests(Some(
        crate::link::ALPN_V2
    )));
}

/// A client offering only `offers` gets `expect`; `received` tells whether its Acks may carry
/// the received offset.
async fn older_client_gets(offers: &[&[u8]], expect: &[u8], received: bool) {
    let p = pki();
    let (server_ep, addr) = server(&p);
    let mut config = tls::client_config(&files(&p.ours, "client")).unwrap();
    config.alpn_protocols = offers.iter().map(|a| a.to_vec()).collect();
    let client_ep =
        client_endpoint_with_tls(config, &crate::config::LinkSettings::default().transport)
            .unwrap();
    let accepted = tokio::spawn(async move {
        let incoming = timeout(DEADLINE, server_ep.accept())
            .await
            .unwrap()
            .unwrap();
        let conn = timeout(DEADLINE, accept(incoming)).await.unwrap().unwrap();
        negotiated_alpn(&conn)
    });
    let conn = timeout(DEADLINE, connect(&client_ep, addr, "server"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(negotiated_alpn(&conn), Some(expect.to_vec()));
    assert_eq!(
        crate::link::proto::acks_received(negotiated_alpn(&conn).as_deref()),
        received
    );
    assert_eq!(
        timeout(DEADLINE, accepted).await.unwrap().unwrap(),
        Some(expect.to_vec())
    );
    conn.close(0u32.into(), b"done");
}

#[tokio::test]
async fn server_not_valid_for_the_requested_name_is_refused() {
    let p = pki();
    let (server_ep, addr) = server(&p);
    let client_ep = client_endpoint(
        &files(&p.ours, "client"),
        &crate::config::LinkSettings::default().transport,
    )
    .unwrap();
    let port = client_ep.local_addr().unwrap().port();
    let (_, client_err) = tokio::join!(
        server_sees_refusal(&server_ep, port),
        client_refused(&client_ep, addr, "agent-b.example")
    );
    assert!(client_err.contains("not valid for name"), "{client_err}");
    // A syntactically invalid name never leaves the client.
    let err = connect(&client_ep, addr, "not a name!").await.unwrap_err();
    assert!(matches!(err, LinkError::BadServerName(_)), "{err}");
}

#[tokio::test]
async fn missing_pem_files_are_named() {
    let p = pki();
    let t = crate::config::LinkSettings::default().transport;
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut f = files(&p.ours, "server");
    f.key = p.ours.join("absent.key");
    let err = server_endpoint(listen, &f, &t).unwrap_err();
    assert!(err.to_string().contains("absent.key"), "{err}");
    let f = files(&p.ours, "nobody");
    let err = client_endpoint(&f, &t).unwrap_err();
    assert!(err.to_string().contains("nobody.pem"), "{err}");
}

/// Per-lane flow control: one lane's stream whose reader has stopped (its whole stream window
/// in flight and unread, as a lane catching up against a slow consumer) does not hold back
/// another lane's stream on the same connection, even when the configured connection-wide
/// windows are no larger than one stream's.
#[tokio::test]
async fn a_stalled_lane_does_not_block_another_lane() {
    let p = pki();
    let mut t = crate::config::LinkSettings::default().transport;
    let window = 256 * 1024;
    (t.stream_window, t.conn_window, t.send_window) = (window, window, window);
    let server_ep = server_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &files(&p.ours, "server"),
        &t,
    )
    .unwrap();
    let addr = server_ep.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let conn = accept(server_ep.accept().await.ok_or("endpoint closed")?).await?;
        // Lane 1: accepted, never read.
        let (_s1, _r1) = conn.accept_bi().await?;
        // Lane 2: read to the end.
        let (_s2, mut r2) = conn.accept_bi().await?;
        let got = r2.read_to_end(1 << 20).await?;
        // The connection (and lane 1, unread) stays open until the test is done.
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((got, conn, _s1, _r1))
    });
    let client_ep = client_endpoint(&files(&p.ours, "client"), &t).unwrap();
    let conn = timeout(DEADLINE, connect(&client_ep, addr, "server"))
        .await
        .unwrap()
        .unwrap();
    let (mut s1, _r1) = conn.open_bi().await.unwrap();
    let backlog = tokio::spawn(async move {
        // Four windows: the write blocks once the stalled reader's window is full.
        let _ = s1.write_all(&vec![b'a'; 4 * window as usize]).await;
        s1
    });
    // Lane 1 is blocked by flow control (its stream's window, or the connection's).
    timeout(DEADLINE, async {
        loop {
            let f = conn.stats().frame_tx;
            if f.stream_data_blocked + f.data_blocked > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("lane 1 fills its window");
    let (mut s2, _r2) = conn.open_bi().await.unwrap();
    let trickle = b"a trickle on lane 2".to_vec();
    timeout(DEADLINE, s2.write_all(&trickle))
        .await
        .expect("lane 2 is not held back by lane 1")
        .unwrap();
    s2.finish().unwrap();
    let (got, _server_conn, _s1, _r1) = timeout(DEADLINE, server)
        .await
        .expect("lane 2 arrives while lane 1 stays stalled")
        .unwrap()
        .unwrap();
    assert_eq!(got, trickle);
    assert!(!backlog.is_finished(), "lane 1 is still stalled");
    let f = conn.stats().frame_tx;
    assert_eq!(
        f.data_blocked, 0,
        "the connection-wide window never ran out"
    );
    conn.close(0u32.into(), b"done");
}
