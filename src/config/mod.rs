//! The agent's TOML configuration: raw file shape, built-in defaults and `validate()`.

mod admin;
mod link;

pub use link::LinkSettings;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::log::FsyncPolicy;
use crate::units::{parse_duration, parse_size};

/// A problem with the configuration; each names the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: Option<String>,
    data_dir: Option<PathBuf>,
    #[serde(default)]
    upstream: RawUpstream,
    #[serde(default)]
    listen: RawListen,
    #[serde(default)]
    serve: RawServe,
    #[serde(default)]
    log: RawLog,
    tls: Option<link::RawTls>,
    #[serde(default)]
    link: link::RawLink,
    #[serde(default)]
    admin: admin::RawAdmin,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    redis: Option<String>,
    agent: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    ack: Option<String>,
    announce_version: Option<String>,
    tls: Option<bool>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_server_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    redis: Option<String>,
    admin: Option<String>,
    agent: Option<String>,
    redis_tls: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServe {
    requirepass: Option<String>,
    username: Option<String>,
    timeout: Option<String>,
    max_replicas: Option<usize>,
    max_connections: Option<usize>,
    max_agents: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    max_bytes: Option<String>,
    max_age: Option<String>,
    segment_bytes: Option<String>,
    fsync: Option<String>,
    snapshot_after: Option<String>,
    keep_page_cache: Option<bool>,
}

/// Where the agent's stream comes from.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub redis: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `REPLCONF version` to announce to the master (Valkey 9 picks its RDB format by it).
    pub announce_version: Option<String>,
}

/// Where the stream comes from: a Redis master (`upstream.redis`) or another agent over QUIC
/// (`upstream.agent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Redis,
    Agent {
        addr: String,
        /// The name the upstream agent's certificate must carry.
        server_name: String,
    },
}

/// What the agent reports upstream in `REPLCONF ACK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckPolicy {
    /// Its own fsynced offset.
    Durable,
    /// The lowest durable offset among connected downstream agents.
    Remote,
}

/// The validated configuration of one agent.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub source: Source,
    pub ack: AckPolicy,
    /// Redis upstream details (address and credentials); `redis` is empty with an agent upstream.
    pub upstream: UpstreamConfig,
    pub listen_agent: Option<SocketAddr>,
    /// TLS towards the Redis master (`upstream.tls = true`).
    pub upstream_tls: Option<crate::redistls::ClientTls>,
    /// A TLS replica port (`listen.redis_tls`) and its certificate (`serve.tls_*`).
    pub listen_redis_tls: Option<SocketAddr>,
    pub serve_tls: Option<crate::redistls::ServerTls>,
    pub tls: Option<crate::link::TlsFiles>,
    pub link: LinkSettings,
    pub listen_redis: SocketAddr,
    pub listen_admin: SocketAddr,
    pub requirepass: Option<String>,
    pub serve_timeout: Duration,
    pub max_replicas: usize,
    /// ACL-style user replicas must name in `AUTH <user> <pass>` (`default` accepts `AUTH <pass>`).
    pub username: String,
    /// Connections on the replica port at once (command phase and syncing).
    pub max_connections: usize,
    /// Downstream agents at once.
    pub max_agents: usize,
    pub log: LogSettings,
    /// The bearer token for the admin listener's mutating endpoints (`admin.token_file`).
    pub admin_token: Option<String>,
}

/// The `[log]` section, in parsed units.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub max_bytes: u64,
    pub max_age: Duration,
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    pub snapshot_after: u64,
    /// Keep sealed segments in the page cache (default: drop them once written back).
    pub keep_page_cache: bool,
}

pub const DEFAULT_LISTEN_REDIS: &str = "127.0.0.1:6380";
pub const DEFAULT_LISTEN_ADMIN: &str = "127.0.0.1:9187";

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text; `origin` names the file in messages and anchors
    /// relative paths.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: origin.to_path_buf(),
            message: e.message().to_string() + &span_hint(text, e.span()),
        })?;
        validate(raw, origin.parent().unwrap_or(Path::new(".")))
    }
}

fn span_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(r) => {
            let line = text[..r.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

fn validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let mut bad = |key: &str, msg: String| problems.push(format!("{key}: {msg}"));

    let name = raw.name.unwrap_or_else(|| "georelay".to_string());
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        bad(
            "name",
            format!("{name:?} must be non-empty and use only letters, digits, '-', '_' or '.'"),
        );
    }
    let data_dir = match raw.data_dir {
        Some(d) if !d.as_os_str().is_empty() => base.join(d),
        _ => {
            bad(
                "data_dir",
                "is required (the directory for the log and snapshots)".into(),
            );
            PathBuf::new()
        }
    };

    let host_port = |v: &str| {
        v.rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
    };
    let (redis, agent_addr) = match (raw.upstream.redis, raw.upstream.agent) {
        (Some(_), Some(_)) => {
            bad(
                "upstream.agent",
                "set either upstream.redis or upstream.agent, not both".into(),
            );
            (String::new(), None)
        }
        (Some(addr), None) if host_port(&addr) => (addr, None),
        (None, Some(addr)) if host_port(&addr) => (String::new(), Some(addr)),
        (Some(addr), None) => {
            bad("upstream.redis", format!("{addr:?} is not host:port"));
            (String::new(), None)
        }
        (None, Some(addr)) => {
            bad("upstream.agent", format!("{addr:?} is not host:port"));
            (String::new(), None)
        }
        (None, None) => {
            bad(
                "upstream.redis",
                "is required (host:port of the master to replicate), or upstream.agent (host:port of an upstream agent)".into(),
            );
            (String::new(), None)
        }
    };
    let has_credentials = raw.upstream.username.is_some()
        || raw.upstream.password.is_some()
        || raw.upstream.password_file.is_some();
    let password = match (raw.upstream.password, raw.upstream.password_file) {
        (Some(_), Some(_)) => {
            bad(
                "upstream.password_file",
                "set either upstream.password or upstream.password_file, not both".into(),
            );
            None
        }
        (Some(p), None) => Some(p),
        (None, Some(f)) => {
            let f = base.join(f);
            match std::fs::read_to_string(&f) {
                Ok(p) => Some(p.trim_end_matches(['\r', '\n']).to_string()),
                Err(e) => {
                    bad(
                        "upstream.password_file",
                        format!("cannot read {}: {e}", f.display()),
                    );
                    None
                }
            }
        }
        (None, None) => None,
    };
    if raw.upstream.username.is_some() && password.is_none() {
        bad(
            "upstream.username",
            "needs upstream.password or upstream.password_file".into(),
        );
    }
    let announce_version = raw.upstream.announce_version.filter(|v| !v.is_empty());
    if let Some(v) = &announce_version {
        let parts: Vec<&str> = v.split('.').collect();
        if parts.len() != 3
            || parts
                .iter()
                .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            bad(
                "upstream.announce_version",
                format!("{v:?} must look like 9.0.0"),
            );
        }
    }
    let ack = match raw.upstream.ack.as_deref() {
        None | Some("durable") => AckPolicy::Durable,
        Some("remote") => AckPolicy::Remote,
        Some(other) => {
            bad(
                "upstream.ack",
                format!("{other:?} must be durable or remote"),
            );
            AckPolicy::Durable
        }
    };
    if agent_addr.is_some() && has_credentials {
        bad(
            "upstream.password",
            "applies to upstream.redis only (agents authenticate with [tls] certificates)".into(),
        );
    }
    if ack == AckPolicy::Remote && raw.listen.agent.is_none() {
        bad(
            "upstream.ack",
            "\"remote\" needs listen.agent (downstream agents whose durable offsets are reported)"
                .into(),
        );
    }

    let mut addr = |key: &str, v: Option<String>, default: &str| -> SocketAddr {
        let text = v.unwrap_or_else(|| default.to_string());
        text.parse().unwrap_or_else(|_| {
            bad(key, format!("{text:?} is not an ip:port socket address"));
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    };
    let listen_redis = addr("listen.redis", raw.listen.redis, DEFAULT_LISTEN_REDIS);
    let listen_admin = addr("listen.admin", raw.listen.admin, DEFAULT_LISTEN_ADMIN);
    let listen_agent = raw.listen.agent.map(|a| addr("listen.agent", Some(a), ""));
    let listen_redis_tls = raw
        .listen
        .redis_tls
        .map(|a| addr("listen.redis_tls", Some(a), ""));

    let size = |key: &str, v: Option<String>, default: &str, problems: &mut Vec<String>| -> u64 {
        parse_size(v.as_deref().unwrap_or(default)).unwrap_or_else(|e| {
            problems.push(format!("{key}: {e}"));
            0
        })
    };
    let dur =
        |key: &str, v: Option<String>, default: &str, problems: &mut Vec<String>| -> Duration {
            parse_duration(v.as_deref().unwrap_or(default)).unwrap_or_else(|e| {
                problems.push(format!("{key}: {e}"));
                Duration::ZERO
            })
        };
    let max_bytes = size("log.max_bytes", raw.log.max_bytes, "10GiB", &mut problems);
    let segment_bytes = size(
        "log.segment_bytes",
        raw.log.segment_bytes,
        "64MiB",
        &mut problems,
    );
    let snapshot_after = size(
        "log.snapshot_after",
        raw.log.snapshot_after,
        "0",
        &mut problems,
    );
    let max_age = dur("log.max_age", raw.log.max_age, "7d", &mut problems);
    let serve_timeout = dur("serve.timeout", raw.serve.timeout, "60s", &mut problems);
    if segment_bytes < 4096 {
        problems.push("log.segment_bytes: must be at least 4KiB".into());
    }
    if max_bytes < segment_bytes.saturating_mul(2) {
        problems.push("log.max_bytes: must be at least twice log.segment_bytes".into());
    }
    if serve_timeout < Duration::from_secs(1) {
        problems.push("serve.timeout: must be at least 1s".into());
    }
    // Refresh the snapshot once the log since it exceeds half the budget, by default.
    let snapshot_after = if snapshot_after == 0 {
        max_bytes / 2
    } else {
        snapshot_after
    };
    let fsync = match raw.log.fsync.as_deref().unwrap_or("everysec") {
        "always" => FsyncPolicy::Always,
        "everysec" => FsyncPolicy::EverySec,
        "no" => FsyncPolicy::No,
        other => {
            problems.push(format!(
                "log.fsync: {other:?} must be always, everysec or no"
            ));
            FsyncPolicy::EverySec
        }
    };
    let max_replicas = raw.serve.max_replicas.unwrap_or(64);
    let max_connections = raw.serve.max_connections.unwrap_or(1024);
    let max_agents = raw.serve.max_agents.unwrap_or(16);
    if max_connections < max_replicas {
        problems.push("serve.max_connections: must be at least serve.max_replicas".into());
    }
    if max_agents == 0 {
        problems.push("serve.max_agents: must be at least 1".into());
    }
    let username = raw.serve.username.unwrap_or_else(|| "default".to_string());
    if username.is_empty() || username.contains(char::is_whitespace) {
        problems.push("serve.username: must be a non-empty name without spaces".into());
    }
    if username != "default" && raw.serve.requirepass.as_deref().unwrap_or("").is_empty() {
        problems.push("serve.username: needs serve.requirepass".into());
    }
    if max_replicas == 0 {
        problems.push("serve.max_replicas: must be at least 1".into());
    }

    let readable = |key: &str, p: Option<PathBuf>, problems: &mut Vec<String>| -> Option<PathBuf> {
        let p = base.join(p?);
        if let Err(e) = std::fs::File::open(&p) {
            problems.push(format!("{key}: cannot read {}: {e}", p.display()));
        }
        Some(p)
    };
    let upstream_tls = if raw.upstream.tls.unwrap_or(false) {
        let ca = readable("upstream.tls_ca", raw.upstream.tls_ca, &mut problems);
        if ca.is_none() {
            problems.push("upstream.tls_ca: is required with upstream.tls = true".into());
        }
        let cert = readable("upstream.tls_cert", raw.upstream.tls_cert, &mut problems);
        let key = readable("upstream.tls_key", raw.upstream.tls_key, &mut problems);
        if cert.is_some() != key.is_some() {
            problems.push(
                "upstream.tls_key: set both upstream.tls_cert and upstream.tls_key, or neither"
                    .into(),
            );
        }
        let host = redis
            .rsplit_once(':')
            .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
            .unwrap_or_default();
        Some(crate::redistls::ClientTls {
            ca: ca.unwrap_or_default(),
            cert,
            key,
            server_name: raw.upstream.tls_server_name.unwrap_or(host),
        })
    } else {
        None
    };
    let serve_tls = match (listen_redis_tls, raw.serve.tls_cert, raw.serve.tls_key) {
        (None, None, None) => None,
        (Some(_), Some(cert), Some(key)) => Some(crate::redistls::ServerTls {
            cert: readable("serve.tls_cert", Some(cert), &mut problems).unwrap_or_default(),
            key: readable("serve.tls_key", Some(key), &mut problems).unwrap_or_default(),
            ca: readable("serve.tls_ca", raw.serve.tls_ca, &mut problems),
        }),
        (Some(_), _, _) => {
            problems.push(
                "serve.tls_cert: listen.redis_tls needs serve.tls_cert and serve.tls_key".into(),
            );
            None
        }
        (None, _, _) => {
            problems.push("listen.redis_tls: serve.tls_cert/serve.tls_key are set but listen.redis_tls is not".into());
            None
        }
    };
    let quic = agent_addr.is_some() || listen_agent.is_some();
    let (tls, server_name) = link::tls(raw.tls, quic, base, &mut problems);
    let link = link::link(raw.link, &mut problems);
    let admin_token = admin::admin(raw.admin, base, &mut problems);
    let source = match agent_addr {
        Some(addr) => {
            let host = addr
                .rsplit_once(':')
                .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
                .unwrap_or_default();
            Source::Agent {
                addr,
                server_name: server_name.unwrap_or(host),
            }
        }
        None => Source::Redis,
    };

    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }
    Ok(Config {
        name,
        data_dir,
        source,
        ack,
        listen_agent,
        upstream_tls,
        listen_redis_tls,
        serve_tls,
        tls,
        link,
        upstream: UpstreamConfig {
            redis,
            username: raw.upstream.username,
            password,
            announce_version,
        },
        listen_redis,
        listen_admin,
        admin_token,
        requirepass: raw.serve.requirepass.filter(|p| !p.is_empty()),
        serve_timeout,
        max_replicas,
        username,
        max_connections,
        max_agents,
        log: LogSettings {
            max_bytes,
            max_age,
            segment_bytes,
            fsync,
            snapshot_after,
            keep_page_cache: raw.log.keep_page_cache.unwrap_or(false),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/georelay/test.toml"))
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse("data_dir = \"d\"\n[upstream]\nredis = \"127.0.0.1:6379\"\n").unwrap();
        assert_eq!(c.name, "georelay");
        assert_eq!(c.data_dir, PathBuf::from("/etc/georelay/d"));
        assert_eq!(c.listen_redis.to_string(), DEFAULT_LISTEN_REDIS);
        assert_eq!(c.log.segment_bytes, 64 << 20);
        assert_eq!(c.log.max_bytes, 10 << 30);
        assert_eq!(c.log.snapshot_after, 5 << 30);
        assert_eq!(c.log.fsync, FsyncPolicy::EverySec);
    }

    #[test]
    fn full_config() {
        let c = parse(
            r#"
name = "site-a"
data_dir = "/var/lib/georelay"
[upstream]
redis = "10.0.0.1:6379"
username = "repl"
password = "pw"
[listen]
redis = "0.0.0.0:6380"
admin = "127.0.0.1:9187"
[serve]
requirepass = "secret"
[log]
max_bytes = "1GiB"
max_age = "1d"
segment_bytes = "16MiB"
fsync = "always"
"#,
        )
        .unwrap();
        assert_eq!(c.upstream.username.as_deref(), Some("repl"));
        assert_eq!(c.requirepass.as_deref(), Some("secret"));
        assert_eq!(c.log.fsync, FsyncPolicy::Always);
        assert_eq!(c.log.max_age, Duration::from_secs(86_400));
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("data_dir = \"d\"\n[upstream]\nredis = \"a:1\"\nredsi = 2\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("redsi"), "{msg}");
    }

    #[test]
    fn every_problem_names_its_key() {
        let e = parse(
            "[log]\nfsync = \"sometimes\"\nmax_age = \"forever\"\n[listen]\nredis = \"nowhere\"\n",
        )
        .unwrap_err();
        let msg = e.to_string();
        for key in [
            "data_dir",
            "upstream.redis",
            "log.fsync",
            "log.max_age",
            "listen.redis",
        ] {
            assert!(
                msg.lines().any(|l| l.starts_with(key)),
                "{key} not named in:\n{msg}"
            );
        }
    }

    #[test]
    fn quic_sides_need_readable_tls_files() {
        let e = parse("data_dir = \"d\"\n[upstream]\nagent = \"site-a:7443\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.lines().any(|l| l.starts_with("tls:")), "{e}");
        let e = parse(
            "data_dir = \"d\"\n[upstream]\nagent = \"site-a:7443\"\n[tls]\nca = \"/nonexistent/ca.pem\"\ncert = \"/nonexistent/b.pem\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tls.ca: cannot read /nonexistent/ca.pem"), "{e}");
        assert!(e.contains("tls.key: is required"), "{e}");
        let e = parse("data_dir = \"d\"\n[upstream]\nredis = \"a:1\"\nack = \"remote\"\n[link]\ncompression = \"lz4\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("upstream.ack"), "{e}");
        assert!(e.contains("link.compression"), "{e}");
    }

    #[test]
    fn agent_upstream_defaults_server_name_to_its_host() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "b.pem", "b.key"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let d = dir.path().display();
        let c = parse(&format!(
            "data_dir = \"d\"\n[upstream]\nagent = \"site-a.example.net:7443\"\n[tls]\nca = \"{d}/ca.pem\"\ncert = \"{d}/b.pem\"\nkey = \"{d}/b.key\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.source,
            Source::Agent {
                addr: "site-a.example.net:7443".into(),
                server_name: "site-a.example.net".into()
            }
        );
        assert_eq!(c.link.compression, crate::link::Compression::Zstd);
    }

    #[test]
    fn redis_tls_and_announce_version_are_checked() {
        let e = parse(
            "data_dir = \"d\"\n[upstream]\nredis = \"a:1\"\ntls = true\nannounce_version = \"nine\"\n[listen]\nredis_tls = \"127.0.0.1:6390\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("upstream.tls_ca: is required"), "{e}");
        assert!(e.contains("upstream.announce_version"), "{e}");
        assert!(e.contains("serve.tls_cert"), "{e}");
    }
}
