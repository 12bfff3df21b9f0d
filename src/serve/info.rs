//! `INFO` and `ROLE` answers on the replica port, with Redis's field names, so Sentinel,
//! redis_exporter and people can read the agent like a chained replica.

use std::fmt::Write;

use bytes::Bytes;

use super::{ReplicaState, ServeCtx};
use crate::resp::Frame;

const NO_REPLID: &str = "0000000000000000000000000000000000000000";

/// The INFO text for `section` (None, "all", "default", "replication" or "server").
pub fn info(ctx: &ServeCtx, section: Option<&str>) -> String {
    let mut out = String::new();
    let all = matches!(
        section,
        None | Some("all") | Some("default") | Some("everything")
    );
    if all || section == Some("server") {
        let _ = write!(
            out,
            "# Server\r\nredis_version:7.0.0\r\ngeorelay_version:{}\r\nredis_mode:standalone\r\nprocess_id:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::process::id()
        );
    }
    if all || section == Some("replication") {
        replication(ctx, &mut out);
    }
    out
}

fn replication(ctx: &ServeCtx, out: &mut String) {
    let status = ctx.log.status();
    let (host, port) = ctx
        .upstream
        .rsplit_once(':')
        .unwrap_or((ctx.upstream.as_str(), "0"));
    let up = ctx
        .health
        .upstream_up
        .load(std::sync::atomic::Ordering::Relaxed);
    let has_epoch = !status.history.is_empty();
    let _ = write!(
        out,
        "# Replication\r\nrole:slave\r\nmaster_host:{host}\r\nmaster_port:{port}\r\nmaster_link_status:{}\r\n\
         master_last_io_seconds_ago:{}\r\nmaster_sync_in_progress:0\r\nslave_read_repl_offset:{}\r\n\
         slave_repl_offset:{}\r\nslave_priority:100\r\nslave_read_only:1\r\nreplica_announced:1\r\n",
        if up { "up" } else { "down" },
        if up { 0 } else { -1 },
        status.head,
        status.head,
    );
    let replicas = ctx.replicas.snapshot();
    let _ = write!(out, "connected_slaves:{}\r\n", replicas.len());
    for (i, r) in replicas.iter().enumerate() {
        let lag = if r.state == ReplicaState::Online {
            r.last_ack.elapsed().as_secs()
        } else {
            0
        };
        let _ = write!(
            out,
            "slave{i}:ip={},port={},state={},offset={},lag={lag}\r\n",
            r.ip,
            r.port,
            r.state.as_redis(),
            r.ack_offset
        );
    }
    let (replid, replid2, second) = match status.history.as_slice() {
        [] => (NO_REPLID.to_string(), NO_REPLID.to_string(), -1i64),
        [only] => (only.replid.clone(), NO_REPLID.to_string(), -1),
        [.., prev, last] => (last.replid.clone(), prev.replid.clone(), last.start as i64),
    };
    let histlen = if has_epoch {
        (status.head + 1).saturating_sub(status.first_valid)
    } else {
        0
    };
    let _ = write!(
        out,
        "master_failover_state:no-failover\r\nmaster_replid:{replid}\r\nmaster_replid2:{replid2}\r\n\
         master_repl_offset:{}\r\nsecond_repl_offset:{second}\r\nrepl_backlog_active:{}\r\n\
         repl_backlog_size:{}\r\nrepl_backlog_first_byte_offset:{}\r\nrepl_backlog_histlen:{histlen}\r\n",
        status.head,
        u8::from(has_epoch),
        status.disk_bytes,
        status.first_valid,
    );
}

/// `ROLE`: answered like a chained replica: `["slave", host, port, state, offset]`.
pub fn role(ctx: &ServeCtx) -> Frame {
    let (host, port) = ctx
        .upstream
        .rsplit_once(':')
        .unwrap_or((ctx.upstream.as_str(), "0"));
    let up = ctx
        .health
        .upstream_up
        .load(std::sync::atomic::Ordering::Relaxed);
    let offset = ctx.log.current().map(|c| c.1 as i64).unwrap_or(-1);
    Frame::Array(vec![
        Frame::Bulk(Bytes::from_static(b"slave")),
        Frame::Bulk(Bytes::from(host.to_string())),
        Frame::Integer(port.parse().unwrap_or(0)),
        Frame::Bulk(Bytes::from_static(if up {
            b"connected"
        } else {
            b"connect"
        })),
        Frame::Integer(offset),
    ])
}
