//! Counts the UDP bytes a QUIC connection puts on and takes off the wire, per peer.

use std::time::Duration;

use super::Metrics;

/// Adds the connection's UDP byte deltas to `georelay_link_bytes_total` every second; never
/// returns (run it beside the connection's work).
pub async fn count(conn: &quinn::Connection, metrics: &Metrics, peer: &str) {
    let sent = metrics.link_bytes.with_label_values(&[peer, "sent"]);
    let received = metrics.link_bytes.with_label_values(&[peer, "received"]);
    let (mut tx, mut rx) = (0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let s = conn.stats();
        sent.inc_by(s.udp_tx.bytes.saturating_sub(tx));
        received.inc_by(s.udp_rx.bytes.saturating_sub(rx));
        tx = tx.max(s.udp_tx.bytes);
        rx = rx.max(s.udp_rx.bytes);
    }
}
