//! Runtime re-pointing of an agent's upstream: the `POST /upstream` request, the override
//! persisted in `data_dir` (it wins over the config file until cleared), and the command the
//! admin listener hands to the upstream supervisor.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::metrics::status::FencedSite;

/// The override file's name inside `data_dir`.
pub const OVERRIDE_FILE: &str = "upstream-override.json";

/// Why a re-point request or the override file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RepointError {
    #[error("bad request: {0}")]
    Request(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a georelay upstream override: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("the agent cannot use that upstream: {0}")]
    Unusable(String),
    #[error("the agent is shutting down")]
    ShuttingDown,
}

/// Where the stream comes from after a re-point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum UpstreamTarget {
    Redis { addr: String },
    Agent { addr: String, server_name: String },
}

impl UpstreamTarget {
    pub fn addr(&self) -> &str {
        match self {
            UpstreamTarget::Redis { addr } | UpstreamTarget::Agent { addr, .. } => addr,
        }
    }
}

impl std::fmt::Display for UpstreamTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamTarget::Redis { addr } => write!(f, "redis {addr}"),
            UpstreamTarget::Agent { addr, server_name } => {
                write!(f, "agent {addr} (server_name {server_name})")
            }
        }
    }
}

/// The body of `POST /upstream`: `{"redis": "host:port"}` or
/// `{"agent": "host:port", "server_name": "…"}`; `"fence": true` also records the former
/// upstream as fenced (a failover: its history past our head is not ours); `"dry_run": true`
/// only checks that the token works and the agent could use that upstream.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RepointRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fence: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// A validated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repoint {
    pub target: UpstreamTarget,
    pub fence: bool,
    pub dry_run: bool,
}

fn is_host_port(v: &str) -> bool {
    v.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
}

impl RepointRequest {
    /// Parses and validates a request body.
    pub fn parse(body: &[u8]) -> Result<Repoint, RepointError> {
        let req: RepointRequest = serde_json::from_slice(body)
            .map_err(|e| RepointError::Request(format!("{e}; expected {{\"redis\": \"host:port\"}} or {{\"agent\": \"host:port\", \"server_name\": \"name\"}}")))?;
        let target = match (req.redis, req.agent, req.server_name) {
            (Some(_), Some(_), _) => {
                return Err(RepointError::Request(
                    "set either \"redis\" or \"agent\", not both".into(),
                ))
            }
            (Some(_), None, Some(_)) => {
                return Err(RepointError::Request(
                    "\"server_name\" applies to \"agent\" only".into(),
                ))
            }
            (Some(addr), None, None) if is_host_port(&addr) => UpstreamTarget::Redis { addr },
            (None, Some(addr), Some(server_name))
                if is_host_port(&addr) && !server_name.is_empty() =>
            {
                UpstreamTarget::Agent { addr, server_name }
            }
            (None, Some(addr), _) if !is_host_port(&addr) => {
                return Err(RepointError::Request(format!(
                    "\"agent\": {addr:?} is not host:port"
                )))
            }
            (None, Some(_), _) => {
                return Err(RepointError::Request(
                    "\"agent\" needs \"server_name\" (the name its certificate carries)".into(),
                ))
            }
            (Some(addr), None, None) => {
                return Err(RepointError::Request(format!(
                    "\"redis\": {addr:?} is not host:port"
                )))
            }
            (None, None, _) => return Err(RepointError::Request(
                "give \"redis\": \"host:port\" or \"agent\": \"host:port\" with \"server_name\""
                    .into(),
            )),
        };
        Ok(Repoint {
            target,
            fence: req.fence,
            dry_run: req.dry_run,
        })
    }
}

/// What is persisted in `data_dir/upstream-override.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Override {
    pub upstream: UpstreamTarget,
    /// Seconds since the epoch when it was set.
    pub set_unix: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced: Option<FencedSite>,
}

pub fn override_path(data_dir: &Path) -> PathBuf {
    data_dir.join(OVERRIDE_FILE)
}

/// Reads the override in force, if any (blocking: call from a blocking context).
pub fn load(data_dir: &Path) -> Result<Option<Override>, RepointError> {
    let path = override_path(data_dir);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RepointError::Read { path, source }),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| RepointError::Corrupt {
            path,
            detail: e.to_string(),
        })
}

/// Persists `o` atomically (temp file, fsync, rename, fsync of the directory); blocking.
pub fn save(data_dir: &Path, o: &Override) -> Result<(), RepointError> {
    use std::io::Write;
    let path = override_path(data_dir);
    let tmp = data_dir.join(format!("{OVERRIDE_FILE}.tmp"));
    let werr = |source| RepointError::Write {
        path: path.clone(),
        source,
    };
    let body = serde_json::to_vec_pretty(o).map_err(|e| werr(std::io::Error::other(e)))?;
    std::fs::create_dir_all(data_dir).map_err(werr)?;
    let mut f = std::fs::File::create(&tmp).map_err(werr)?;
    f.write_all(&body).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    std::fs::rename(&tmp, &path).map_err(werr)?;
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(werr)
}

/// Removes the override (the config file's upstream applies again); blocking.
pub fn clear(data_dir: &Path) -> Result<bool, RepointError> {
    let path = override_path(data_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(RepointError::Write { path, source }),
    }
}

/// What the admin listener asks the upstream supervisor to do.
#[derive(Debug)]
pub enum RepointCmd {
    Set {
        req: Repoint,
        reply: oneshot::Sender<Result<Override, RepointError>>,
    },
    Clear {
        reply: oneshot::Sender<Result<bool, RepointError>>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_forms() {
        let r = RepointRequest::parse(br#"{"redis": "127.0.0.1:6379"}"#).unwrap();
        assert_eq!(
            r.target,
            UpstreamTarget::Redis {
                addr: "127.0.0.1:6379".into()
            }
        );
        assert!(!r.fence && !r.dry_run);
        let r = RepointRequest::parse(
            br#"{"agent": "127.0.0.1:7443", "server_name": "region-b", "fence": true, "dry_run": true}"#,
        )
        .unwrap();
        assert_eq!(r.target.addr(), "127.0.0.1:7443");
        assert!(r.fence && r.dry_run);
        for bad in [
            &br#"{"redis": "nope"}"#[..],
            br#"{"agent": "127.0.0.1:1"}"#,
            br#"{"redis": "127.0.0.1:1", "agent": "127.0.0.1:2", "server_name": "x"}"#,
            br#"{"redis": "127.0.0.1:1", "server_name": "x"}"#,
            br#"{"redis": "127.0.0.1:1", "extra": 1}"#,
            br#"{}"#,
            b"not json",
        ] {
            let e = RepointRequest::parse(bad).unwrap_err();
            assert!(matches!(e, RepointError::Request(_)), "{e}");
        }
    }

    #[test]
    fn override_file_round_trip_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let o = Override {
            upstream: UpstreamTarget::Agent {
                addr: "127.0.0.1:7443".into(),
                server_name: "region-b".into(),
            },
            set_unix: 1,
            fenced: None,
        };
        save(dir.path(), &o).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(o));
        assert!(clear(dir.path()).unwrap());
        assert!(!clear(dir.path()).unwrap());
        std::fs::write(override_path(dir.path()), b"{").unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(RepointError::Corrupt { .. })
        ));
    }
}
