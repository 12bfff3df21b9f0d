//! The `[upstream]` section: where the stream comes from (a Redis master or an upstream
//! agent), the credentials and TLS towards the master, and what `REPLCONF ACK` reports.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::client::{self, RawAuth, RawClientTls};
use super::problems::{is_host_port, Problems};
use super::{AckPolicy, UpstreamConfig};
use crate::redistls::ClientTls;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub(super) redis: Option<String>,
    pub(super) agent: Option<String>,
    /// `cluster`, `read_from`, `cluster_refresh`, `lanes`: see `cluster.rs`.
    pub(super) cluster: Option<Vec<String>>,
    pub(super) read_from: Option<String>,
    pub(super) cluster_refresh: Option<String>,
    pub(super) lanes: Option<String>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) ack: Option<String>,
    pub(super) announce_version: Option<String>,
    pub(super) tls: Option<bool>,
    pub(super) tls_ca: Option<PathBuf>,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    pub(super) tls_server_name: Option<String>,
}

/// The validated `[upstream]` section.
pub(super) struct Upstream {
    /// Redis master details; `redis` is empty with an agent upstream.
    pub(super) redis: UpstreamConfig,
    /// `upstream.agent`, when the stream comes from another agent.
    pub(super) agent: Option<String>,
    pub(super) ack: AckPolicy,
    pub(super) tls: Option<ClientTls>,
}

pub(super) fn validate_upstream(
    raw: RawUpstream,
    base: &Path,
    problems: &mut Problems,
) -> Upstream {
    let cluster = raw.cluster.is_some();
    let (redis, agent) = match (raw.redis, raw.agent) {
        (Some(_), Some(_)) => {
            problems.bad(
                "upstream.agent",
                "set either upstream.redis or upstream.agent, not both",
            );
            (String::new(), None)
        }
        (Some(addr), None) if is_host_port(&addr) => (addr, None),
        (None, Some(addr)) if is_host_port(&addr) => (String::new(), Some(addr)),
        (Some(addr), None) => {
            problems.bad("upstream.redis", format!("{addr:?} is not host:port"));
            (String::new(), None)
        }
        (None, Some(addr)) => {
            problems.bad("upstream.agent", format!("{addr:?} is not host:port"));
            (String::new(), None)
        }
        (None, None) if cluster => (String::new(), None),
        (None, None) => {
            problems.bad(
                "upstream.redis",
                "is required (host:port of the master to replicate), or upstream.agent (host:port of an upstream agent), or upstream.cluster (seed nodes of a Redis Cluster)",
            );
            (String::new(), None)
        }
    };
    let has_credentials =
        raw.username.is_some() || raw.password.is_some() || raw.password_file.is_some();
    let password = client::password(
        "upstream",
        RawAuth {
            username: raw.username.as_deref(),
            password: raw.password,
            password_file: raw.password_file,
        },
        base,
        problems,
    );
    let announce_version = raw.announce_version.filter(|v| !v.is_empty());
    if let Some(v) = &announce_version {
        let parts: Vec<&str> = v.split('.').collect();
        if parts.len() != 3
            || parts
                .iter()
                .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            problems.bad(
                "upstream.announce_version",
                format!("{v:?} must look like 9.0.0"),
            );
        }
    }
    let ack = match raw.ack.as_deref() {
        None | Some("durable") => AckPolicy::Durable,
        Some("remote") => AckPolicy::Remote,
        Some(other) => {
            problems.bad(
                "upstream.ack",
                format!("{other:?} must be durable or remote"),
            );
            AckPolicy::Durable
        }
    };
    if agent.is_some() && has_credentials {
        problems.bad(
            "upstream.password",
            "applies to upstream.redis only (agents authenticate with [tls] certificates)",
        );
    }
    // With an agent upstream, `ack = "remote"` applies once a re-point (`POST /upstream`) makes
    // the upstream a Redis master, as after a switchover.
    let tls = client::client_tls(
        "upstream",
        RawClientTls {
            tls: raw.tls,
            ca: raw.tls_ca,
            cert: raw.tls_cert,
            key: raw.tls_key,
            server_name: raw.tls_server_name,
        },
        &redis,
        base,
        problems,
    );
    Upstream {
        redis: UpstreamConfig {
            redis,
            username: raw.username,
            password,
            announce_version,
        },
        agent,
        ack,
        tls,
    }
}
