//! `INFO` and `ROLE` answers on the replica port, with Redis's field names, so Sentinel,
//! redis_exporter and people can read the agent like a chained replica.

use std::fmt::Write;

use bytes::Bytes;

use super::{ReplicaState, ServeCtx};
use crate::origin::OriginRelease;
use crate::resp::Reply;

const NO_REPLID: &str = "0000000000000000000000000000000000000000";
/// Shown as the server version before the agent holds any snapshot to learn it from.
const UNKNOWN_VERSION: &str = "0.0.0";

/// The `redis_version` to report: the origin's, as its snapshot names it.
pub fn origin_version(origin: Option<&OriginRelease>) -> &str {
    origin.map(|o| o.redis_version()).unwrap_or(UNKNOWN_VERSION)
}

/// The INFO text for the requested sections (none = default; `all`, `everything`, `default`;
/// or any of server, clients, memory, persistence, replication, keyspace).
/// `tcp_port` is the port the asking connection came in on.
pub fn info(
    ctx: &ServeCtx,
    origin: Option<&OriginRelease>,
    tcp_port: u16,
    sections: &[String],
) -> String {
    let all = sections.is_empty()
        || sections
            .iter()
            .any(|s| matches!(s.as_str(), "all" | "default" | "everything"));
    let want = |name: &str| all || sections.iter().any(|s| s == name);
    let mut out = String::new();
    if want("server") {
        server(ctx, origin, tcp_port, &mut out);
    }
    if want("clients") {
        let _ = write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:0\r\n\r\n",
            ctx.port.clients.len(),
            ctx.max_connections
        );
    }
    if want("memory") {
        out.push_str(
            "# Memory\r\nmaxmemory:0\r\nmaxmemory_human:0B\r\nmaxmemory_policy:noeviction\r\n\r\n",
        );
    }
    if want("persistence") {
        out.push_str("# Persistence\r\nloading:0\r\naof_enabled:0\r\n\r\n");
    }
    if want("replication") {
        replication(ctx, &mut out);
        out.push_str("\r\n");
    }
    if want("keyspace") {
        out.push_str("# Keyspace\r\n");
    }
    out
}

fn server(ctx: &ServeCtx, origin: Option<&OriginRelease>, tcp_port: u16, out: &mut String) {
    let uptime = ctx.port.started.elapsed().as_secs();
    let _ = write!(
        out,
        "# Server\r\nredis_version:{}\r\n",
        origin_version(origin)
    );
    if let Some(o) = origin.filter(|o| o.valkey) {
        let _ = write!(
            out,
            "server_name:valkey\r\nvalkey_version:{}\r\n",
            o.version
        );
    }
    let _ = write!(
        out,
        "georelay_version:{}\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:{}\r\n\
         process_id:{}\r\nrun_id:{}\r\ntcp_port:{tcp_port}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\n\
         hz:10\r\nconfigured_hz:10\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
        usize::BITS,
        std::process::id(),
        ctx.port.run_id,
        uptime / 86_400,
    );
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
    let heard = ctx
        .metrics
        .upstream_view
        .heard_us
        .load(std::sync::atomic::Ordering::Relaxed);
    let since_heard = if heard == 0 {
        -1
    } else {
        i64::try_from(crate::clock::now_us().saturating_sub(heard) / 1_000_000).unwrap_or(i64::MAX)
    };
    let _ = write!(
        out,
        "# Replication\r\nrole:slave\r\nmaster_host:{host}\r\nmaster_port:{port}\r\nmaster_link_status:{}\r\n\
         master_last_io_seconds_ago:{}\r\nmaster_sync_in_progress:0\r\nslave_read_repl_offset:{}\r\n\
         slave_repl_offset:{}\r\n",
        if up { "up" } else { "down" },
        if up { since_heard.max(0) } else { -1 },
        status.head,
        status.head,
    );
    if !up {
        let _ = write!(out, "master_link_down_since_seconds:{since_heard}\r\n");
    }
    // Priority 0: Sentinel never picks the agent for promotion (it cannot become a master),
    // though it often holds the highest offset of the origin's replicas.
    out.push_str("slave_priority:0\r\nslave_read_only:1\r\nreplica_announced:1\r\n");
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
            "slave{i}:ip={},port={},state={},offset={},lag={lag},fsync_offset={}\r\n",
            r.ip,
            r.port,
            r.state.as_redis(),
            r.ack_offset,
            r.fack_offset
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
pub fn role(ctx: &ServeCtx) -> Reply {
    let (host, port) = ctx
        .upstream
        .rsplit_once(':')
        .unwrap_or((ctx.upstream.as_str(), "0"));
    let up = ctx
        .health
        .upstream_up
        .load(std::sync::atomic::Ordering::Relaxed);
    let offset = ctx.log.current().map(|c| c.1 as i64).unwrap_or(-1);
    Reply::Array(vec![
        Reply::Bulk(Bytes::from_static(b"slave")),
        Reply::Bulk(Bytes::from(host.to_string())),
        Reply::Integer(port.parse().unwrap_or(0)),
        Reply::Bulk(Bytes::from_static(if up {
            b"connected"
        } else {
            b"connect"
        })),
        Reply::Integer(offset),
    ])
}
