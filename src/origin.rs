//! What the agent knows of the origin server's release: the `redis-ver` (Redis) or
//! `valkey-ver` (Valkey 8+) AUX field of the RDB it stored as its snapshot. INFO and HELLO report
//! it, and it tells the upstream link whether the master understands `REPLCONF ACK … FACK`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::log::Log;

/// How much of an RDB is read for its AUX fields (they come right after the 9-byte magic).
const AUX_PREFIX: usize = 4096;
/// What Valkey reports as `redis_version` (its Redis compatibility level).
const VALKEY_REDIS_COMPAT: &str = "7.2.4";

/// The origin's server and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginRelease {
    pub version: String,
    pub valkey: bool,
}

impl OriginRelease {
    /// From an RDB's AUX fields.
    pub fn from_aux(fields: &[(String, String)]) -> Option<OriginRelease> {
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
        if let Some(v) = get("valkey-ver") {
            return Some(OriginRelease {
                version: v,
                valkey: true,
            });
        }
        get("redis-ver").map(|v| OriginRelease {
            version: v,
            valkey: false,
        })
    }

    /// From the first bytes of an RDB (its magic and AUX fields); None if they name no release.
    pub fn from_rdb_prefix(prefix: &[u8]) -> Option<OriginRelease> {
        crate::rdb::aux_fields(prefix)
            .ok()
            .and_then(|f| Self::from_aux(&f))
    }

    /// Reads an RDB file's prefix (blocking: call off the async workers).
    pub fn read(path: &Path) -> Option<OriginRelease> {
        let mut buf = Vec::with_capacity(AUX_PREFIX);
        let file = std::fs::File::open(path).ok()?;
        file.take(AUX_PREFIX as u64).read_to_end(&mut buf).ok()?;
        Self::from_rdb_prefix(&buf)
    }

    /// The `redis_version` INFO field such a server shows.
    pub fn redis_version(&self) -> &str {
        if self.valkey {
            VALKEY_REDIS_COMPAT
        } else {
            &self.version
        }
    }

    /// Whether the master parses `REPLCONF ACK <off> FACK <aof-off>`: Redis 7.2+ and every
    /// Valkey (it forked from 7.2). Older masters would ignore the extra pair, but WAITAOF does
    /// not exist there, so it is not sent.
    pub fn supports_fack(&self) -> bool {
        if self.valkey {
            return true;
        }
        let mut parts = self
            .version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let major = parts.next().unwrap_or(0);
        let minor = parts.next().unwrap_or(0);
        (major, minor) >= (7, 2)
    }
}

/// The release of the snapshot currently served, read once per snapshot file.
#[derive(Default)]
pub struct OriginCache {
    cached: Mutex<Option<(PathBuf, Option<OriginRelease>)>>,
}

impl OriginCache {
    /// The release named by the log's current snapshot (reads its prefix off the async workers
    /// when the snapshot changed since the last call).
    pub async fn get(&self, log: &Log) -> Option<OriginRelease> {
        let snap = log.snapshot_for_full_sync()?;
        if let Some((path, rel)) = self.lock().as_ref() {
            if *path == snap.path {
                return rel.clone();
            }
        }
        let path = snap.path.clone();
        let rel = tokio::task::spawn_blocking(move || OriginRelease::read(&path))
            .await
            .ok()
            .flatten();
        *self.lock() = Some((snap.path, rel.clone()));
        rel
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(PathBuf, Option<OriginRelease>)>> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(v: &str, valkey: bool) -> OriginRelease {
        OriginRelease {
            version: v.into(),
            valkey,
        }
    }

    #[test]
    fn fack_support_by_release() {
        assert!(!rel("6.2.14", false).supports_fack());
        assert!(!rel("7.0.15", false).supports_fack());
        assert!(rel("7.2.0", false).supports_fack());
        assert!(rel("7.4.1", false).supports_fack());
        assert!(rel("8.0.0", false).supports_fack());
        assert!(rel("9.1.0", true).supports_fack());
        assert!(!rel("garbage", false).supports_fack());
    }

    #[test]
    fn aux_fields_name_the_release() {
        let f = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            OriginRelease::from_aux(&[f("redis-ver", "7.0.15"), f("redis-bits", "64")]),
            Some(rel("7.0.15", false))
        );
        let valkey = OriginRelease::from_aux(&[f("valkey-ver", "9.1.0")]).unwrap();
        assert_eq!(valkey, rel("9.1.0", true));
        assert_eq!(valkey.redis_version(), "7.2.4");
        assert_eq!(OriginRelease::from_aux(&[f("ctime", "1")]), None);
        assert_eq!(OriginRelease::from_rdb_prefix(b"garbage"), None);
    }
}
