//! The `[serve]` section: what Redis replicas of this agent must present (user, password,
//! TLS certificate) and how many connections, replicas and downstream agents it takes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::problems::Problems;
use crate::redistls::ServerTls;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServe {
    pub(super) requirepass: Option<String>,
    pub(super) username: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) max_replicas: Option<usize>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_agents: Option<usize>,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    pub(super) tls_ca: Option<PathBuf>,
}

/// The validated `[serve]` section.
pub(super) struct Serve {
    pub(super) requirepass: Option<String>,
    pub(super) username: String,
    pub(super) timeout: Duration,
    pub(super) max_replicas: usize,
    pub(super) max_connections: usize,
    pub(super) max_agents: usize,
    pub(super) tls: Option<ServerTls>,
}

/// Validates `[serve]`; `tls_listen` says whether `listen.redis_tls` is set (the certificate
/// and the TLS port come together).
pub(super) fn validate_serve(
    raw: RawServe,
    tls_listen: bool,
    base: &Path,
    problems: &mut Problems,
) -> Serve {
    let timeout = problems.duration("serve.timeout", raw.timeout.as_deref(), "60s");
    if timeout < Duration::from_secs(1) {
        problems.bad("serve.timeout", "must be at least 1s");
    }
    let max_replicas = raw.max_replicas.unwrap_or(64);
    let max_connections = raw.max_connections.unwrap_or(1024);
    let max_agents = raw.max_agents.unwrap_or(16);
    if max_connections < max_replicas {
        problems.bad(
            "serve.max_connections",
            "must be at least serve.max_replicas",
        );
    }
    if max_agents == 0 {
        problems.bad("serve.max_agents", "must be at least 1");
    }
    let username = raw.username.unwrap_or_else(|| "default".to_string());
    if username.is_empty() || username.contains(char::is_whitespace) {
        problems.bad("serve.username", "must be a non-empty name without spaces");
    }
    if username != "default" && raw.requirepass.as_deref().unwrap_or("").is_empty() {
        problems.bad("serve.username", "needs serve.requirepass");
    }
    if max_replicas == 0 {
        problems.bad("serve.max_replicas", "must be at least 1");
    }
    let tls = match (tls_listen, raw.tls_cert, raw.tls_key) {
        (false, None, None) => None,
        (true, Some(cert), Some(key)) => Some(ServerTls {
            cert: problems
                .readable("serve.tls_cert", base, Some(cert))
                .unwrap_or_default(),
            key: problems
                .readable("serve.tls_key", base, Some(key))
                .unwrap_or_default(),
            ca: problems.readable("serve.tls_ca", base, raw.tls_ca),
        }),
        (true, _, _) => {
            problems.bad(
                "serve.tls_cert",
                "listen.redis_tls needs serve.tls_cert and serve.tls_key",
            );
            None
        }
        (false, _, _) => {
            problems.bad(
                "listen.redis_tls",
                "serve.tls_cert/serve.tls_key are set but listen.redis_tls is not",
            );
            None
        }
    };
    Serve {
        requirepass: raw.requirepass.filter(|p| !p.is_empty()),
        username,
        timeout,
        max_replicas,
        max_connections,
        max_agents,
        tls,
    }
}
