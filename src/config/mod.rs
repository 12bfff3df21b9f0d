//! The agent's TOML configuration: the raw file shape, built-in defaults and `validate()`.
//!
//! Each section lives in its own file with its raw shape (`RawX`, `deny_unknown_fields`) and
//! a `fn validate_x(raw: RawX, …, problems: &mut Problems) -> X` that parses it, applies the
//! defaults and reports every problem as `key: message` through [`Problems`] (the one way to
//! report; its helpers parse sizes, durations, rates, addresses and readable files).
//! `validate` below calls the sections in order, then runs the checks that span sections.
//!
//! To add a section `[x]`: create `x.rs` with `RawX` and `validate_x`, add `x: RawX` (with
//! `#[serde(default)]`, or `Option<RawX>` when its presence means something) to [`RawConfig`],
//! call `validate_x` in `validate` and put its result in [`Config`]. A key that belongs in an
//! existing section goes in that section's `RawX` (one field) and can be validated by a
//! function in a new file that takes the raw section and the problem list.

mod admin;
mod client;
pub mod cluster;
mod link;
mod listen;
mod log;
mod problems;
mod serve;
mod target;
mod upstream;

pub use cluster::{lane_hash, ClusterSettings, LanePart, PortRange, ReadFrom};
pub use link::LinkSettings;
pub use listen::{DEFAULT_LISTEN_ADMIN, DEFAULT_LISTEN_REDIS};
pub use log::LogSettings;
pub use target::{OnUnknown, TargetConfig, TargetEndpoint};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use problems::{host_of, Problems};

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

/// The whole file as written: top-level keys and one field per section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: Option<String>,
    data_dir: Option<PathBuf>,
    #[serde(default)]
    upstream: upstream::RawUpstream,
    #[serde(default)]
    listen: listen::RawListen,
    #[serde(default)]
    serve: serve::RawServe,
    #[serde(default)]
    log: log::RawLog,
    tls: Option<link::RawTls>,
    #[serde(default)]
    link: link::RawLink,
    #[serde(default)]
    admin: admin::RawAdmin,
    target: Option<target::RawTarget>,
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
    /// `upstream.cluster`: follow every shard of a Redis/Valkey Cluster, one lane per shard.
    pub cluster: Option<ClusterSettings>,
    /// `listen.shard_ports`: one replica port per lane, in lane-creation order.
    pub shard_ports: Option<PortRange>,
    /// The bearer token for the admin listener's mutating endpoints (`admin.token_file`).
    pub admin_token: Option<String>,
    /// `[target]`: apply mode (write the stream into a Redis as a client).
    pub target: Option<TargetConfig>,
}

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

/// The top-level keys: `name` and `data_dir` (anchored at `base`).
fn validate_top(
    name: Option<String>,
    data_dir: Option<PathBuf>,
    base: &Path,
    problems: &mut Problems,
) -> (String, PathBuf) {
    let name = name.unwrap_or_else(|| "georelay".to_string());
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        problems.bad(
            "name",
            format!("{name:?} must be non-empty and use only letters, digits, '-', '_' or '.'"),
        );
    }
    let data_dir = match data_dir {
        Some(d) if !d.as_os_str().is_empty() => base.join(d),
        _ => {
            problems.bad(
                "data_dir",
                "is required (the directory for the log and snapshots)",
            );
            PathBuf::new()
        }
    };
    (name, data_dir)
}

/// Validates every section, then the checks that span sections; all problems at once.
fn validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
    let mut problems = Problems::default();
    let (name, data_dir) = validate_top(raw.name, raw.data_dir, base, &mut problems);
    let cluster = cluster::validate_cluster(&raw.upstream, &mut problems);
    let shard_ports = cluster::shard_ports(
        raw.listen.shard_ports.as_deref(),
        cluster.is_some(),
        &mut problems,
    );
    let upstream = upstream::validate_upstream(raw.upstream, base, &mut problems);
    let listen = listen::validate_listen(raw.listen, &mut problems);
    let log = log::validate_log(raw.log, &mut problems);
    let serve = serve::validate_serve(raw.serve, listen.redis_tls.is_some(), base, &mut problems);
    let quic = upstream.agent.is_some() || listen.agent.is_some();
    let (tls, server_name) = link::validate_tls(raw.tls, quic, base, &mut problems);
    let link = link::validate_link(raw.link, &mut problems);
    let admin_token = admin::validate_admin(raw.admin, base, &mut problems);
    let target = target::validate_target(raw.target, base, &mut problems);
    if let Some(t) = &target {
        let mut origin = vec![upstream.redis.redis.clone()];
        origin.extend(cluster.iter().flat_map(|c| c.seeds.iter().cloned()));
        let lanes = cluster.is_some() || (upstream.agent.is_some() && shard_ports.is_some());
        target::check_against_upstream(t, &origin, lanes, &mut problems);
    }

    if upstream.ack == AckPolicy::Remote && listen.agent.is_none() {
        problems.bad(
            "upstream.ack",
            "\"remote\" needs listen.agent (downstream agents whose durable offsets are reported)",
        );
    }
    let source = match upstream.agent {
        Some(addr) => Source::Agent {
            server_name: server_name.unwrap_or_else(|| host_of(&addr)),
            addr,
        },
        None => Source::Redis,
    };

    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems.into_lines()));
    }
    Ok(Config {
        name,
        data_dir,
        source,
        ack: upstream.ack,
        upstream: upstream.redis,
        upstream_tls: upstream.tls,
        listen_agent: listen.agent,
        listen_redis_tls: listen.redis_tls,
        listen_redis: listen.redis,
        listen_admin: listen.admin,
        admin_token,
        serve_tls: serve.tls,
        requirepass: serve.requirepass,
        serve_timeout: serve.timeout,
        max_replicas: serve.max_replicas,
        username: serve.username,
        max_connections: serve.max_connections,
        max_agents: serve.max_agents,
        tls,
        link,
        log,
        cluster,
        shard_ports,
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::FsyncPolicy;

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

    /// The link defaults are written once: a config without `[link]` and
    /// `LinkSettings::default()` agree, and they are BBR and zstd.
    #[test]
    fn link_defaults_come_from_the_config() {
        let c = parse("data_dir = \"d\"\n[upstream]\nredis = \"127.0.0.1:6379\"\n").unwrap();
        let d = LinkSettings::default();
        assert_eq!(c.link.transport, d.transport);
        assert_eq!(d.transport.congestion, crate::link::Congestion::Bbr);
        assert_eq!(c.link.compression, crate::link::Compression::Zstd);
        assert_eq!(d.compression, crate::link::Compression::Zstd);
        assert_eq!(
            (c.link.zstd_level, c.link.heartbeat),
            (d.zstd_level, d.heartbeat)
        );
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
