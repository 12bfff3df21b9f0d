//! The `[listen]` section: the replica port, the admin HTTP port, the QUIC port for
//! downstream agents and the TLS replica port.

use std::net::SocketAddr;

use serde::Deserialize;

use super::problems::Problems;

pub const DEFAULT_LISTEN_REDIS: &str = "127.0.0.1:6380";
pub const DEFAULT_LISTEN_ADMIN: &str = "127.0.0.1:9187";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListen {
    pub(super) redis: Option<String>,
    pub(super) admin: Option<String>,
    pub(super) agent: Option<String>,
    pub(super) redis_tls: Option<String>,
    /// `"P1-P2"`: one replica port per lane (see `cluster.rs`).
    pub(super) shard_ports: Option<String>,
}

/// The validated `[listen]` section.
pub(super) struct Listen {
    pub(super) redis: SocketAddr,
    pub(super) admin: SocketAddr,
    pub(super) agent: Option<SocketAddr>,
    pub(super) redis_tls: Option<SocketAddr>,
}

pub(super) fn validate_listen(raw: RawListen, problems: &mut Problems) -> Listen {
    Listen {
        redis: problems.socket_addr("listen.redis", raw.redis.as_deref(), DEFAULT_LISTEN_REDIS),
        admin: problems.socket_addr("listen.admin", raw.admin.as_deref(), DEFAULT_LISTEN_ADMIN),
        agent: raw
            .agent
            .map(|a| problems.socket_addr("listen.agent", Some(&a), "")),
        redis_tls: raw
            .redis_tls
            .map(|a| problems.socket_addr("listen.redis_tls", Some(&a), "")),
    }
}
