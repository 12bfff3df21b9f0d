//! The `[target]` section: apply mode. The agent writes its stream, as a client, into a Redis
//! that cannot be its replica (`redis = "host:port"` or `cluster = [seeds]`), with the
//! credentials and TLS towards it, consent to flush, a database mapping and what to do with
//! commands the target does not know.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::client::{self, RawAuth, RawClientTls};
use super::problems::{is_host_port, Problems};
use crate::redistls::ClientTls;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    redis: Option<String>,
    cluster: Option<Vec<String>>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    tls: Option<bool>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_server_name: Option<String>,
    allow_flush: Option<bool>,
    /// Source database → target database; unmapped databases keep their number.
    databases: Option<BTreeMap<String, u32>>,
    on_unknown: Option<String>,
}

/// Where apply mode writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetEndpoint {
    Redis(String),
    Cluster(Vec<String>),
}

/// What a lane does with a command the target answers "unknown command" to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnknown {
    /// Stop the lane, naming the command and its offset (the default).
    Stop,
    /// Skip the command (counted in `georelay_apply_errors_total{reason="unknown_command"}`).
    Skip,
}

/// The validated `[target]` section.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub endpoint: TargetEndpoint,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: Option<ClientTls>,
    /// A full sync may empty the target (`FLUSHALL`) first.
    pub allow_flush: bool,
    pub databases: BTreeMap<u32, u32>,
    pub on_unknown: OnUnknown,
}

impl TargetConfig {
    /// The target database for source database `db`.
    pub fn map_db(&self, db: u32) -> u32 {
        self.databases.get(&db).copied().unwrap_or(db)
    }
}

pub(super) fn validate_target(
    raw: Option<RawTarget>,
    base: &Path,
    problems: &mut Problems,
) -> Option<TargetConfig> {
    let raw = raw?;
    let endpoint = match (raw.redis, raw.cluster) {
        (Some(_), Some(_)) => {
            problems.bad(
                "target.cluster",
                "set either target.redis or target.cluster, not both",
            );
            TargetEndpoint::Redis(String::new())
        }
        (Some(addr), None) => {
            if !is_host_port(&addr) {
                problems.bad("target.redis", format!("{addr:?} is not host:port"));
            }
            TargetEndpoint::Redis(addr)
        }
        (None, Some(seeds)) => {
            if seeds.is_empty() {
                problems.bad("target.cluster", "needs at least one seed host:port");
            }
            for s in seeds.iter().filter(|s| !is_host_port(s)) {
                problems.bad("target.cluster", format!("seed {s:?} is not host:port"));
            }
            TargetEndpoint::Cluster(seeds)
        }
        (None, None) => {
            problems.bad(
                "target.redis",
                "is required in [target] (host:port of the Redis to write into), or target.cluster (seed nodes)",
            );
            TargetEndpoint::Redis(String::new())
        }
    };
    let password = client::password(
        "target",
        RawAuth {
            username: raw.username.as_deref(),
            password: raw.password,
            password_file: raw.password_file,
        },
        base,
        problems,
    );
    let mut databases = BTreeMap::new();
    for (from, to) in raw.databases.unwrap_or_default() {
        match from.parse::<u32>() {
            Ok(n) => {
                databases.insert(n, to);
            }
            Err(_) => problems.bad(
                "target.databases",
                format!("{from:?} is not a database number"),
            ),
        }
    }
    if let TargetEndpoint::Cluster(_) = endpoint {
        if let Some((from, to)) = databases.iter().find(|(_, to)| **to != 0) {
            problems.bad(
                "target.databases",
                format!("maps database {from} to {to}, but a cluster target has database 0 only"),
            );
        }
    }
    let on_unknown = match raw.on_unknown.as_deref() {
        None | Some("stop") => OnUnknown::Stop,
        Some("skip") => OnUnknown::Skip,
        Some(other) => {
            problems.bad(
                "target.on_unknown",
                format!("{other:?} must be stop or skip"),
            );
            OnUnknown::Stop
        }
    };
    let first = match &endpoint {
        TargetEndpoint::Redis(a) => a.clone(),
        TargetEndpoint::Cluster(s) => s.first().cloned().unwrap_or_default(),
    };
    let tls = client::client_tls(
        "target",
        RawClientTls {
            tls: raw.tls,
            ca: raw.tls_ca,
            cert: raw.tls_cert,
            key: raw.tls_key,
            server_name: raw.tls_server_name,
        },
        &first,
        base,
        problems,
    );
    Some(TargetConfig {
        endpoint,
        username: raw.username,
        password,
        tls,
        allow_flush: raw.allow_flush.unwrap_or(false),
        databases,
        on_unknown,
    })
}

/// The checks between `[target]` and `[upstream]`: never write into the origin itself
/// (`origin`: upstream.redis and the upstream.cluster seeds); with lanes (`upstream.cluster`,
/// or a cluster-mode region) each lane applies with per-slot checkpoints, so the target must
/// be a cluster.
pub(super) fn check_against_upstream(
    t: &TargetConfig,
    origin: &[String],
    lanes: bool,
    problems: &mut Problems,
) {
    if let (true, TargetEndpoint::Redis(_)) = (lanes, &t.endpoint) {
        problems.bad(
            "target.redis",
            "with lanes (upstream.cluster, or upstream.agent with listen.shard_ports) apply needs target.cluster: each lane keeps per-slot checkpoints and fills its own slots of a cluster target",
        );
    }
    let same = origin
        .iter()
        .filter(|o| !o.is_empty())
        .find(|o| match &t.endpoint {
            TargetEndpoint::Redis(a) => a == *o,
            TargetEndpoint::Cluster(seeds) => seeds.contains(o),
        });
    if let Some(o) = same {
        let key = match t.endpoint {
            TargetEndpoint::Redis(_) => "target.redis",
            TargetEndpoint::Cluster(_) => "target.cluster",
        };
        problems.bad(
            key,
            format!("{o:?} is the upstream itself; the target must be another server"),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError, OnUnknown, TargetEndpoint};
    use std::path::Path;

    fn parse(target: &str) -> Result<Config, ConfigError> {
        let text =
            format!("data_dir = \"d\"\n[upstream]\nredis = \"127.0.0.1:6379\"\n[target]\n{target}");
        Config::parse(&text, Path::new("/etc/georelay/t.toml"))
    }

    fn problems(target: &str) -> String {
        match parse(target) {
            Err(ConfigError::Invalid(p)) => p.join("\n"),
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn standalone_target_with_defaults() {
        let c = parse("redis = \"127.0.0.1:7000\"\n").unwrap();
        let t = c.target.unwrap();
        assert_eq!(t.endpoint, TargetEndpoint::Redis("127.0.0.1:7000".into()));
        assert!(!t.allow_flush);
        assert_eq!(t.on_unknown, OnUnknown::Stop);
        assert_eq!(t.map_db(3), 3);
        assert!(parse("").is_err());
        assert!(Config::parse(
            "data_dir = \"d\"\n[upstream]\nredis = \"h:1\"\n",
            Path::new("/x")
        )
        .unwrap()
        .target
        .is_none());
    }

    #[test]
    fn full_target() {
        let c = parse(
            "redis = \"t:6379\"\nusername = \"app\"\npassword = \"pw\"\nallow_flush = true\n\
             on_unknown = \"skip\"\ndatabases = { \"3\" = 0, \"4\" = 1 }\n",
        )
        .unwrap();
        let t = c.target.unwrap();
        assert!(t.allow_flush);
        assert_eq!(t.on_unknown, OnUnknown::Skip);
        assert_eq!((t.map_db(3), t.map_db(4), t.map_db(5)), (0, 1, 5));
        assert_eq!(t.password.as_deref(), Some("pw"));
        let c = parse("cluster = [\"127.0.0.1:7000\", \"127.0.0.1:7001\"]\n").unwrap();
        assert_eq!(
            c.target.unwrap().endpoint,
            TargetEndpoint::Cluster(vec!["127.0.0.1:7000".into(), "127.0.0.1:7001".into()])
        );
    }

    #[test]
    fn target_problems_name_their_keys() {
        assert!(problems("redis = \"nope\"\n").contains("target.redis: \"nope\" is not host:port"));
        assert!(problems("redis = \"a:1\"\ncluster = [\"b:2\"]\n").contains("target.cluster"));
        assert!(problems("cluster = []\n").contains("target.cluster: needs at least one seed"));
        assert!(
            problems("redis = \"a:1\"\non_unknown = \"ignore\"\n").contains("target.on_unknown")
        );
        assert!(problems("redis = \"a:1\"\nusername = \"u\"\n").contains("target.username"));
        assert!(problems("redis = \"a:1\"\ndatabases = { x = 1 }\n").contains("target.databases"));
        assert!(problems("cluster = [\"a:1\"]\ndatabases = { \"1\" = 2 }\n")
            .contains("cluster target has database 0 only"));
        assert!(problems("redis = \"a:1\"\ntls = true\n").contains("target.tls_ca"));
        assert!(matches!(
            parse("redis = \"a:1\"\nbogus = 1\n"),
            Err(ConfigError::Syntax { .. })
        ));
        assert!(problems("redis = \"127.0.0.1:6379\"\n").contains("is the upstream itself"));
        assert!(
            problems("redis = \"a:1\"\npassword = \"p\"\npassword_file = \"f\"\n")
                .contains("target.password_file: set either")
        );
        assert!(
            problems("redis = \"a:1\"\npassword_file = \"/nonexistent/pw\"\n")
                .contains("target.password_file: cannot read /nonexistent/pw")
        );
        let lanes = "data_dir = \"d\"\n[listen]\nshard_ports = \"7101-7103\"\n[upstream]\n\
                     cluster = [\"a:1\"]\n[target]\nredis = \"t:1\"\n";
        match Config::parse(lanes, Path::new("/x")) {
            Err(ConfigError::Invalid(p)) => {
                assert!(p.join("\n").contains("needs target.cluster"), "{p:?}")
            }
            other => panic!("expected problems, got {other:?}"),
        }
        let lanes_ok = lanes.replace("redis = \"t:1\"", "cluster = [\"t:1\"]");
        assert!(Config::parse(&lanes_ok, Path::new("/x")).is_ok());
        let into_origin = lanes.replace("redis = \"t:1\"", "cluster = [\"a:1\"]");
        match Config::parse(&into_origin, Path::new("/x")) {
            Err(ConfigError::Invalid(p)) => {
                assert!(
                    p.join("\n")
                        .contains("target.cluster: \"a:1\" is the upstream itself"),
                    "{p:?}"
                )
            }
            other => panic!("expected problems, got {other:?}"),
        }
    }
}
